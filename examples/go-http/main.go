// go-http: a small web app for waka, standard library only.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
)

const greeting = "Hello from Go on waka!"

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("go-http: served %s", r.URL.Path)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s built with %s\n", greeting, runtime.Version())
	})
	log.Printf("go-http: listening on %s", port)
	log.Fatal(http.ListenAndServe("0.0.0.0:"+port, nil))
}
