# shellcheck shell=bash
# Which file in the app says what to install, and which files the result depends on.

# The files bin/detect accepts, in the words its failure message uses.
PYTHON_MANIFESTS=(requirements.txt setup.py pyproject.toml Pipfile Pipfile.lock)
PYTHON_MANIFESTS_LOOKED_FOR="requirements.txt, setup.py, pyproject.toml or Pipfile"

has_python_manifest() {
	local build_dir=$1 name
	for name in "${PYTHON_MANIFESTS[@]}"; do
		[[ -f $build_dir/$name ]] && return 0
	done
	return 1
}

# Sets DEPENDENCY_MANIFEST to `requirements.txt` or `uv.lock`; dies naming the file for the
# layouts that are detected but not built yet, so the user knows what to add.
select_dependency_manifest() {
	local build_dir=$1
	if [[ -f $build_dir/requirements.txt ]]; then
		DEPENDENCY_MANIFEST=requirements.txt
	elif [[ -f $build_dir/pyproject.toml && -f $build_dir/uv.lock ]]; then
		DEPENDENCY_MANIFEST=uv.lock
	elif [[ -f $build_dir/pyproject.toml ]]; then
		die "pyproject.toml without uv.lock is not supported yet." \
			"Add a uv.lock (run: uv lock) or a requirements.txt."
	elif [[ -f $build_dir/Pipfile || -f $build_dir/Pipfile.lock ]]; then
		die "Pipfile is not supported yet." \
			"Add a requirements.txt (e.g. run: pipenv requirements > requirements.txt)."
	elif [[ -f $build_dir/setup.py ]]; then
		die "setup.py is not supported yet." \
			"Add a requirements.txt that lists the app's dependencies."
	else
		die "no $PYTHON_MANIFESTS_LOOKED_FOR in the app"
	fi
}

# Sets REQUIREMENT_FILES to requirements.txt plus the files it pulls in with -r/-c (one level
# deep, paths relative to the app), since all of them decide what gets installed.
collect_requirement_files() {
	local build_dir=$1 line
	local include='^[[:space:]]*(-r|--requirement|-c|--constraint)([[:space:]]+|=)([^[:space:]#]+)'
	REQUIREMENT_FILES=(requirements.txt)
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line =~ $include ]]; then
			REQUIREMENT_FILES+=("${BASH_REMATCH[3]}")
		fi
	done <"$build_dir/requirements.txt"
}

# True when a requirement points into the app itself (-e ., ./pkg, file:...): the installed
# result then depends on the app's code, so a cached virtualenv could be stale.
requirements_install_local_paths() {
	local build_dir=$1 file
	for file in "${REQUIREMENT_FILES[@]}"; do
		[[ -f $build_dir/$file ]] || continue
		if grep -Eq '^[[:space:]]*(-e|--editable)([[:space:]]|=)|^[[:space:]]*(\.|/|file:)|@[[:space:]]*file:' \
			"$build_dir/$file"; then
			return 0
		fi
	done
	return 1
}

# True when gunicorn is one of the app's declared requirements (not a comment, not a longer
# name such as gunicorn-extras).
requires_gunicorn() {
	local build_dir=$1 file
	local requirement_line='^[[:space:]]*gunicorn[[:space:]]*([]=<>!~;@,#[]|$)'
	if [[ -f $build_dir/requirements.txt ]]; then
		collect_requirement_files "$build_dir"
		for file in "${REQUIREMENT_FILES[@]}"; do
			[[ -f $build_dir/$file ]] || continue
			grep -Eiq "$requirement_line" "$build_dir/$file" && return 0
		done
		return 1
	fi
	[[ -f $build_dir/uv.lock ]] && grep -Eiq '^name = "gunicorn"$' "$build_dir/uv.lock"
}
