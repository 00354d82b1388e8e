# shellcheck shell=bash
# Heroku-style build output, the same file in every built-in buildpack.
# Steps start with an arrow; everything that belongs to a step (sub-steps and the tools' own
# output) is indented 7 columns so it lines up under the step's text.

puts_step() {
	printf -- '-----> %s\n' "$*"
}

puts_sub() {
	printf -- '       %s\n' "$*"
}

# One argument per line; on stderr so a warning survives any stdout filtering by the caller.
puts_warn() {
	local line
	for line in "$@"; do
		printf -- ' !     %s\n' "$line" >&2
	done
}

die() {
	puts_warn "$@"
	exit 1
}

# Indent a tool's output line by line as it arrives (sed -u: unbuffered, so a slow install
# streams instead of appearing all at once at the end). Colour codes some tools print even in
# batch mode are dropped: a build log is plain text.
indent() {
	sed -u -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/^/       /'
}

# Runs a command with its output indented under the current step. A failure ends the build with
# the tool's own output already shown and its exit status named: a failed step never deploys.
run_indented() {
	local what=$1 status
	shift
	"$@" 2>&1 | indent && return 0 || status=${PIPESTATUS[0]}
	die "$what failed (exit status $status); its output is above."
}
