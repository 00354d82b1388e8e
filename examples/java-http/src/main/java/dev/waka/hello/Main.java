package dev.waka.hello;

import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/** A small web app for waka, on the JDK's own HTTP server (no dependencies). */
public final class Main {
    static final String GREETING = "Hello from Java on waka!";

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(System.getProperty("server.port", System.getenv().getOrDefault("PORT", "5000")));
        HttpServer server = HttpServer.create(new InetSocketAddress("0.0.0.0", port), 0);
        server.createContext("/", exchange -> {
            System.out.println("java-http: served " + exchange.getRequestURI().getPath());
            byte[] body = (GREETING + " Java " + Runtime.version().feature() + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "text/plain; charset=utf-8");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("java-http: listening on " + port);
    }
}
