# shellcheck shell=bash
# composer install --no-dev, with vendor/ kept in the build cache under a key made of everything
# the install depends on. When nothing changed, vendor/ is restored and only the autoloader is
# written again (its class map covers the app's own classes, which change every build).

vendor_cache_key() {
	local file
	{
		printf 'buildpack\n'
		cat "$BUILDPACK_DIR/bin/compile" "$BUILDPACK_DIR"/lib/*
		printf 'php %s composer %s\n' "$PHP_VERSION" "$COMPOSER_VERSION"
		printf 'build_dir %s stack %s arch %s\n' "$BUILD_DIR" "${STACK:-}" "$(uname -m)"
		for file in composer.json composer.lock auth.json; do
			[[ -f $BUILD_DIR/$file ]] || continue
			printf 'file %s\n' "$file"
			cat "$BUILD_DIR/$file"
		done
	} | hash_stdin
}

install_with_composer() {
	local key root=$CACHE_DIR/php/vendor
	command -v composer >/dev/null ||
		die "This app has a composer.json, and the stack has no composer (Debian's composer package provides it)."
	export COMPOSER_HOME=$CACHE_DIR/php/composer-home
	export COMPOSER_CACHE_DIR=$CACHE_DIR/php/composer-cache
	export COMPOSER_NO_INTERACTION=1 COMPOSER_ALLOW_SUPERUSER=1
	COMPOSER_VERSION=$(composer --version 2>/dev/null | sed -n 's/^Composer version \([^ ]*\).*/\1/p')
	puts_sub "Using Composer ${COMPOSER_VERSION:-(unknown version)} (the stack's)"
	if [[ ! -f $BUILD_DIR/composer.lock ]]; then
		puts_warn "Warning: no composer.lock: Composer resolves the newest releases that composer.json allows." \
			"Commit composer.lock so every build installs the same ones."
	fi
	key=$(vendor_cache_key)
	if [[ ! -d $BUILD_DIR/vendor ]] && cache_restore "$root" "$key" "$BUILD_DIR/vendor"; then
		puts_sub "composer.json and composer.lock unchanged: restored vendor/ from the build cache"
		run_indented "composer dump-autoload" env -C "$BUILD_DIR" composer dump-autoload \
			--no-dev --optimize --no-interaction
		return 0
	fi
	run_indented "composer install" env -C "$BUILD_DIR" composer install \
		--no-dev --prefer-dist --optimize-autoloader --no-interaction --no-progress
	mkdir -p "$BUILD_DIR/vendor"
	if cache_save "$root" "$key" "$BUILD_DIR/vendor"; then
		puts_sub "Saved vendor/ to the build cache"
	else
		puts_warn "Warning: could not save vendor/ to the build cache; the next build installs again."
	fi
}
