# shellcheck shell=bash
# Reading go.mod without the go command, so bin/release stays cheap.

# Prints the module path (the `module` line), or fails when there is none.
module_path() {
	local line pattern='^[[:space:]]*module[[:space:]]+"?([^"[:space:]]+)'
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line =~ $pattern ]]; then
			echo "${BASH_REMATCH[1]}"
			return 0
		fi
	done <"$1/go.mod"
	return 1
}

# The name `go build` gives the module's root command: the last path element, or the one
# before a major-version suffix (example.com/tool/v2 -> tool).
binary_name() {
	local path=$1 last
	last=${path##*/}
	if [[ $last =~ ^v[0-9]+$ && $path == */* ]]; then
		path=${path%/*}
		last=${path##*/}
	fi
	echo "$last"
}

# True when the module's root directory is a main package (a non-test .go file says so).
root_is_main_package() {
	local file
	for file in "$1"/*.go; do
		[[ -f $file && $file != *_test.go ]] || continue
		grep -Eq '^package[[:space:]]+main([[:space:]]|$)' "$file" && return 0
	done
	return 1
}

# The `go` directive: the Go release the module says it needs (e.g. 1.21).
module_go_version() {
	sed -n 's/^[[:space:]]*go[[:space:]]\{1,\}\([0-9][0-9.]*\).*/\1/p' "$1/go.mod" | head -n1
}
