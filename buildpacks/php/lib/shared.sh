# shellcheck shell=bash
# Build-cache and config-var helpers, the same file in every built-in language buildpack.

# Config vars that control how the build itself runs rather than configure the app (Heroku's
# list, plus the loader and shell variables that would change what every command does).
BUILD_CONTROL_VARS='^(PATH|HOME|GIT_DIR|CPATH|CPPATH|LIBRARY_PATH|LANG|BUILD_DIR|CACHE_DIR|ENV_DIR|BASH_ENV|ENV|IFS|SHELLOPTS|BASHOPTS|LD_[A-Z_]*)$'

# Exports the app's config vars (ENV_DIR: one file per var) into the build, as Heroku's language
# buildpacks do, so build scripts see the app's settings. The variables above are left out.
export_config_vars() {
	local env_dir=$1 file name
	[[ -n $env_dir && -d $env_dir ]] || return 0
	for file in "$env_dir"/*; do
		name=${file##*/}
		[[ -f $file && $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ && ! $name =~ $BUILD_CONTROL_VARS ]] || continue
		export "$name=$(<"$file")"
	done
}

# The sha256 of what arrives on stdin: cache keys are hashes of everything a result depends on.
hash_stdin() {
	sha256sum | cut -d' ' -f1
}

# Copies a tree, as hard links when source and target share a mount (nearly free) and as a real
# copy otherwise (the build sandbox mounts the cache and the app separately). Linking is safe
# because installers replace files rather than edit them, and a slug is unpacked read-only.
# Either way modification times are kept, so the slug packer reuses unchanged layers.
copy_tree() {
	local source=$1 target=$2
	cp -al "$source" "$target" 2>/dev/null && return 0
	rm -rf "$target"
	cp -a "$source" "$target"
}

# The cache keeps one finished directory per kind under $root/<key>/tree. An entry is written
# under a temporary name and renamed into place, so an entry that exists is whole; only the
# newest entry is kept.

# Restores the entry for $key into $target (replacing it); false when there is no such entry.
cache_restore() {
	local root=$1 key=$2 target=$3
	[[ -d $root/$key/tree ]] || return 1
	rm -rf "$target"
	mkdir -p "$(dirname "$target")"
	copy_tree "$root/$key/tree" "$target"
}

# Stores $source as the entry for $key and drops older entries. Non-zero on failure; callers
# warn and go on, since a cache that cannot be written costs time, never correctness.
cache_save() {
	local root=$1 key=$2 source=$3 incoming entry
	mkdir -p "$root" || return 1
	incoming="$root/.incoming.$$"
	rm -rf "$incoming" && mkdir "$incoming" || return 1
	copy_tree "$source" "$incoming/tree" || return 1
	if ! mv -T "$incoming" "$root/$key" 2>/dev/null; then
		# Another build stored the same key first; its entry is as good.
		rm -rf "$incoming"
		[[ -d $root/$key/tree ]] || return 1
	fi
	for entry in "$root"/*; do
		[[ -e $entry && $entry != "$root/$key" ]] || continue
		rm -rf "$entry"
	done
	# Leftovers of builds that died while storing; the age spares one that is storing now.
	find "$root" -maxdepth 1 -name '.incoming.*' -mmin +60 -exec rm -rf {} +
}

# True when the cache holds an entry for $key.
cache_has() {
	[[ -d $1/$2/tree ]]
}
