# shellcheck shell=bash
# node_modules in the build cache, under a key made of everything the install depends on: when
# nothing changed, the installed tree is restored and the package manager does not run at all.
#
# The tree is stored as installed, before the build script and the pruning, since the build may
# need devDependencies. Restoring skips the root package's own install scripts, so those are run
# again: they may generate files in the app itself.

ROOT_INSTALL_SCRIPTS=(preinstall install postinstall preprepare prepare postprepare)

node_modules_cache_key() {
	local file name
	{
		printf 'buildpack\n'
		cat "$BUILDPACK_DIR/bin/compile" "$BUILDPACK_DIR"/lib/*
		printf 'node %s npm %s arch %s\n' "$(node --version)" "$NPM_VERSION" "$(uname -m)"
		printf 'package manager %s\n' "${PM_COMMAND[*]}"
		printf 'build_dir %s stack %s\n' "$BUILD_DIR" "${STACK:-}"
		for file in package.json "$LOCKFILE" .npmrc .yarnrc .yarnrc.yml pnpm-workspace.yaml; do
			[[ -n $file && -f $BUILD_DIR/$file ]] || continue
			printf 'file %s\n' "$file"
			cat "$BUILD_DIR/$file"
		done
		for name in $(compgen -e | grep -Ei '^(npm_config_|yarn_|node_env$|node_options$)' | sort); do
			[[ $name =~ ^(npm_config_cache|YARN_CACHE_FOLDER|npm_config_store_dir)$ ]] && continue
			printf 'env %s=%s\n' "$name" "${!name}"
		done
	} | hash_stdin
}

install_or_restore_node_modules() {
	local key script
	local cache_root=$NODE_CACHE/node_modules
	key=$(node_modules_cache_key)
	if cache_restore "$cache_root" "$key" "$BUILD_DIR/node_modules"; then
		puts_sub "${LOCKFILE:-package.json} unchanged: restored node_modules from the build cache"
		for script in "${ROOT_INSTALL_SCRIPTS[@]}"; do
			has_script "$script" && run_script "$BUILD_DIR" "$script"
		done
		return 0
	fi
	rm -rf "$BUILD_DIR/node_modules"
	install_dependencies "$BUILD_DIR"
	mkdir -p "$BUILD_DIR/node_modules"
	if cache_save "$cache_root" "$key" "$BUILD_DIR/node_modules"; then
		puts_sub "Saved node_modules to the build cache"
	else
		puts_warn "Warning: could not save node_modules to the build cache; the next build installs again."
	fi
}

write_profile_script() {
	local build_dir=$1
	mkdir -p "$build_dir/.profile.d"
	cat >"$build_dir/.profile.d/nodejs.sh" <<'PROFILE'
# Written by waka's Node.js buildpack. Config vars are already set: defaults yield to them.
export NODE_HOME="$HOME/.heroku/node"
export PATH="$HOME/.heroku/node/bin:$PATH:$HOME/node_modules/.bin"
export NODE_ENV="${NODE_ENV:-production}"
# Official Node.js builds trust only their bundled CAs; add the stack's store, as for builds.
if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
fi
PROFILE
}
