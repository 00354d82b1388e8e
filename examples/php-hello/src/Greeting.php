<?php

namespace Hello;

/** Loaded through Composer's autoloader (composer.json: autoload.psr-4). */
final class Greeting
{
    public const TEXT = 'Hello from PHP on waka!';

    public static function line(): string
    {
        return self::TEXT . ' PHP ' . PHP_VERSION . "\n";
    }
}
