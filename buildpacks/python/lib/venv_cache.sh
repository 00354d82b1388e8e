# shellcheck shell=bash
# The finished virtualenv is kept in the build cache under a key made of everything it depends
# on, so a rebuild whose requirements did not change restores it instead of running the
# installer (that is what makes a warm build take a fraction of a second).
#
# Layout: $CACHE_DIR/python/venvs/<key>/ is one complete virtualenv. An entry is written under a
# temporary name and renamed into place, so an entry that exists is always whole; only the
# newest entry is kept.

# Prints the key. A virtualenv embeds absolute paths (script shebangs, bin/activate), so the
# build directory is part of it along with the interpreter, the installer, the buildpack's own
# code, the stack and the contents of every file that decides what is installed.
venv_cache_key() {
	local build_dir=$1 file name
	shift
	{
		printf 'buildpack\n'
		cat "$BUILDPACK_DIR/bin/compile" "$BUILDPACK_DIR"/lib/*.sh
		printf 'python %s %s\n' "$PYTHON_BIN" "$PYTHON_VERSION"
		printf 'installer %s\n' "$INSTALLER"
		printf 'build_dir %s\n' "$build_dir"
		printf 'stack %s %s\n' "${STACK:-}" "$MACHTYPE"
		for file in "$@"; do
			printf 'file %s\n' "$file"
			cat "$build_dir/$file" 2>/dev/null || printf 'missing\n'
		done
		for name in "${!INSTALLER_ENV[@]}"; do
			printf 'env %s=%s\n' "$name" "${INSTALLER_ENV[$name]}"
		done | sort
	} | sha256sum | cut -d' ' -f1
}

# Copies a directory tree, as hard links when source and target are on the same mount (nearly
# free) and as a real copy otherwise. Linking is safe because nothing edits an installed file in
# place: installers replace files, and a slug is unpacked read-only.
copy_tree() {
	local source=$1 target=$2
	if ln "$source/pyvenv.cfg" "$target.link-probe" 2>/dev/null; then
		rm -f "$target.link-probe"
		# A partial failure (e.g. files owned by another uid) falls back to copying.
		cp -al "$source" "$target" 2>/dev/null && return 0
		rm -rf "$target"
	fi
	cp -a "$source" "$target"
}

# Restores the virtualenv for $key into $venv_dir; false when there is no such entry.
restore_cached_venv() {
	local key=$1 venv_dir=$2 entry="$VENV_CACHE_DIR/$1"
	[[ -f $entry/pyvenv.cfg ]] || return 1
	rm -rf "$venv_dir"
	copy_tree "$entry" "$venv_dir"
}

# Stores $venv_dir as the entry for $key and drops older entries. Returns non-zero on failure;
# the caller decides whether that matters (it does not fail a build).
save_venv_to_cache() {
	local key=$1 venv_dir=$2 incoming entry
	mkdir -p "$VENV_CACHE_DIR" || return 1
	incoming="$VENV_CACHE_DIR/.incoming.$$"
	rm -rf "$incoming" || return 1
	copy_tree "$venv_dir" "$incoming" || return 1
	if ! mv -T "$incoming" "$VENV_CACHE_DIR/$key" 2>/dev/null; then
		# Another build of the same app stored the same key first; its entry is as good.
		rm -rf "$incoming"
		[[ -f $VENV_CACHE_DIR/$key/pyvenv.cfg ]] || return 1
	fi
	for entry in "$VENV_CACHE_DIR"/*; do
		[[ -e $entry && $entry != "$VENV_CACHE_DIR/$key" ]] || continue
		rm -rf "$entry"
	done
	# Leftovers of builds that died while storing; the age spares one that is storing now.
	find "$VENV_CACHE_DIR" -maxdepth 1 -name '.incoming.*' -mmin +60 -exec rm -rf {} +
}

forget_cached_venvs() {
	rm -rf "$VENV_CACHE_DIR"
}
