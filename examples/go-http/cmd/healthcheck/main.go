// healthcheck: GETs the web process's address and exits non-zero unless it answers 200, to show
// that every main package of the module is built into bin/.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	url := "http://127.0.0.1:" + os.Getenv("PORT") + "/"
	response, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, url, response.Status)
		os.Exit(1)
	}
	fmt.Println("ok")
}
