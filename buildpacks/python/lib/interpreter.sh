# shellcheck shell=bash
# Choosing the interpreter: builds use the stack's own Python 3, never a downloaded one, so the
# app runs on exactly the interpreter its dyno will have at /usr/bin.

STACK_PYTHON_DIR=/usr/bin

# major.minor of every /usr/bin/python3.N on the stack, one per line, in version order.
stack_python_versions() {
	local candidate
	for candidate in "$STACK_PYTHON_DIR"/python3.*; do
		if [[ ${candidate##*/} =~ ^python(3\.[0-9]+)$ && -x $candidate ]]; then
			echo "${BASH_REMATCH[1]}"
		fi
	done | sort -t. -k2,2n
}

python_full_version() {
	"$1" -I -S -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'
}

# Reads the version the app asks for. Sets REQUESTED_VERSION (e.g. 3.11 or 3.11.4, empty when
# nothing is asked for) and REQUESTED_FROM (the file it came from).
read_requested_version() {
	local build_dir=$1 raw=""
	REQUESTED_VERSION="" REQUESTED_FROM=""
	if [[ -f $build_dir/.python-version ]]; then
		REQUESTED_FROM=.python-version
		# pyenv's format: the first line that is not a comment.
		raw=$(grep -Ev '^[[:space:]]*(#|$)' "$build_dir/.python-version" | head -n1 || true)
	elif [[ -f $build_dir/runtime.txt ]]; then
		REQUESTED_FROM=runtime.txt
		raw=$(head -n1 "$build_dir/runtime.txt")
	else
		return 0
	fi
	raw=${raw//[[:space:]]/}
	raw=${raw#python-}
	if [[ ! $raw =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ ]]; then
		die "$REQUESTED_FROM asks for Python '${raw}', which is not a version this buildpack understands." \
			"Write a version such as 3.11 (in .python-version) or python-3.11.2 (in runtime.txt)."
	fi
	REQUESTED_VERSION=$raw
}

# Sets PYTHON_BIN (e.g. /usr/bin/python3.11) and PYTHON_VERSION (e.g. 3.11.2); dies listing what
# the stack provides when the app asks for a major.minor it does not have.
select_interpreter() {
	local build_dir=$1 wanted_minor provided
	read_requested_version "$build_dir"
	if [[ -z $REQUESTED_VERSION ]]; then
		[[ -x $STACK_PYTHON_DIR/python3 ]] ||
			die "This stack has no Python 3 ($STACK_PYTHON_DIR/python3 is missing)."
		PYTHON_VERSION=$(python_full_version "$STACK_PYTHON_DIR/python3")
		PYTHON_BIN=$STACK_PYTHON_DIR/python${PYTHON_VERSION%.*}
		[[ -x $PYTHON_BIN ]] || PYTHON_BIN=$STACK_PYTHON_DIR/python3
		puts_sub "Using Python $PYTHON_VERSION ($PYTHON_BIN, the stack's default)"
		return 0
	fi

	[[ $REQUESTED_VERSION =~ ^([0-9]+\.[0-9]+) ]]
	wanted_minor=${BASH_REMATCH[1]}
	provided=$(stack_python_versions)
	if ! grep -qxF "$wanted_minor" <<<"$provided"; then
		provided=$(paste -sd, <<<"$provided" | sed 's/,/, /g')
		die "$REQUESTED_FROM asks for Python $REQUESTED_VERSION, but this stack provides only Python ${provided:-(none)} ($STACK_PYTHON_DIR/python3.N)." \
			"Change $REQUESTED_FROM to one of those versions, or remove it to use the stack's default."
	fi
	PYTHON_BIN=$STACK_PYTHON_DIR/python$wanted_minor
	PYTHON_VERSION=$(python_full_version "$PYTHON_BIN")
	if [[ $REQUESTED_VERSION != "$wanted_minor" && $REQUESTED_VERSION != "$PYTHON_VERSION" ]]; then
		puts_warn "Warning: $REQUESTED_FROM asks for Python $REQUESTED_VERSION; the stack has $PYTHON_VERSION, which is used instead."
	fi
	puts_sub "Using Python $PYTHON_VERSION ($PYTHON_BIN, as asked by $REQUESTED_FROM)"
}
