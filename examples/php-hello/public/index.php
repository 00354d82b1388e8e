<?php

require __DIR__ . '/../vendor/autoload.php';

header('Content-Type: text/plain; charset=utf-8');
error_log('php-hello: served ' . parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));
echo \Hello\Greeting::line();
