"""The built-in buildpacks (Heroku classic API), shipped as package data."""
