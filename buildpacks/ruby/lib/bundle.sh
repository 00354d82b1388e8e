# shellcheck shell=bash
# bundle install in deployment mode, with the installed gems kept in the build cache.
#
# vendor/bundle is restored from CACHE_DIR/ruby before `bundle install` runs, so Bundler only
# installs what changed ("Using rack 3.0.8" instead of "Installing"), then removes what the
# Gemfile.lock no longer lists. The cache entry is keyed by everything that makes installed gems
# unusable (the Ruby release, the CPU, the build path); it is written again only when the
# Gemfile or Gemfile.lock changed.

GROUPS_LEFT_OUT=development:test

bundle_cache_key() {
	{
		printf 'ruby %s\n' "$(ruby -e 'print RUBY_DESCRIPTION')"
		printf 'bundler %s\n' "$BUNDLER_VERSION"
		printf 'build_dir %s stack %s arch %s\n' "$BUILD_DIR" "${STACK:-}" "$(uname -m)"
		printf 'without %s\n' "${BUNDLE_WITHOUT:-$GROUPS_LEFT_OUT}"
	} | hash_stdin
}

gemfile_hash() {
	cat "$BUILD_DIR/Gemfile" "$BUILD_DIR/Gemfile.lock" | hash_stdin
}

# The app's .bundle/config, as Heroku writes it: it ships in the slug, so `bundle exec` in a
# dyno finds the same gems without any environment variable.
configure_bundler() {
	local setting
	for setting in "deployment true" "path vendor/bundle" "without ${BUNDLE_WITHOUT:-$GROUPS_LEFT_OUT}" "bin vendor/bundle/bin"; do
		# shellcheck disable=SC2086 # two words: the setting's name and its value
		run_indented "bundle config set --local $setting" env -C "$BUILD_DIR" bundle config set --local $setting
	done
}

install_gems() {
	local key lock_hash root=$CACHE_DIR/ruby/bundle
	key=$(bundle_cache_key)
	lock_hash=$(gemfile_hash)
	if [[ -d $BUILD_DIR/vendor/bundle ]]; then
		puts_sub "Using the app's own vendor/bundle"
	elif cache_restore "$root" "$key" "$BUILD_DIR/vendor/bundle"; then
		puts_sub "Restored vendor/bundle from the build cache"
	fi
	if [[ -d $BUILD_DIR/vendor/cache ]]; then
		puts_sub "Installing gems from vendor/cache where it has them"
	fi
	run_indented "bundle install" env -C "$BUILD_DIR" BUNDLE_JOBS=4 BUNDLE_RETRY=1 bundle install
	mkdir -p "$BUILD_DIR/vendor/bundle"
	if [[ $(cat "$root/$key/gemfile-hash" 2>/dev/null) == "$lock_hash" ]]; then
		return 0
	fi
	if cache_save "$root" "$key" "$BUILD_DIR/vendor/bundle" && echo "$lock_hash" >"$root/$key/gemfile-hash"; then
		puts_sub "Saved vendor/bundle to the build cache"
	else
		puts_warn "Warning: could not save vendor/bundle to the build cache; the next build installs again."
	fi
}

write_profile_script() {
	mkdir -p "$BUILD_DIR/.profile.d"
	cat >"$BUILD_DIR/.profile.d/ruby.sh" <<'PROFILE'
# Written by waka's Ruby buildpack. Config vars are already set: defaults yield to them.
export PATH="$HOME/bin:$HOME/vendor/bundle/bin:$PATH"
export RACK_ENV="${RACK_ENV:-production}"
export RAILS_ENV="${RAILS_ENV:-production}"
export RAILS_LOG_TO_STDOUT="${RAILS_LOG_TO_STDOUT:-enabled}"
export RAILS_SERVE_STATIC_FILES="${RAILS_SERVE_STATIC_FILES:-enabled}"
PROFILE
}
