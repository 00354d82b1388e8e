# shellcheck shell=bash
# npm, Yarn or pnpm, chosen by the lockfile as Heroku does.
#
# Yarn and pnpm run through `npm exec` (the version from package.json's packageManager, else a
# default that reads the lockfile), not corepack: the stack's corepack checks downloads against
# the registry signing keys it was released with, and refuses releases signed with newer keys.
# npm checks each tarball's integrity against the registry either way.

# Sets PM (npm|yarn|pnpm), LOCKFILE (may be empty) and PM_COMMAND (the argv prefix that runs it).
select_package_manager() {
	local build_dir=$1 package_manager=$2 wanted_version=""
	if [[ $package_manager =~ ^(npm|yarn|pnpm)@([^+]+) ]]; then
		wanted_version=${BASH_REMATCH[2]}
	fi
	if [[ -f $build_dir/pnpm-lock.yaml ]]; then
		PM=pnpm LOCKFILE=pnpm-lock.yaml
	elif [[ -f $build_dir/yarn.lock ]]; then
		PM=yarn LOCKFILE=yarn.lock
	elif [[ -f $build_dir/package-lock.json ]]; then
		PM=npm LOCKFILE=package-lock.json
	elif [[ -f $build_dir/npm-shrinkwrap.json ]]; then
		PM=npm LOCKFILE=npm-shrinkwrap.json
	else
		PM=npm LOCKFILE=""
	fi
	if [[ -n $wanted_version && ${package_manager%%@*} != "$PM" ]]; then
		puts_warn "Warning: packageManager says ${package_manager%%@*}, but the lockfile is $LOCKFILE; using $PM."
		wanted_version=""
	fi
	case $PM in
	npm) PM_COMMAND=(npm) ;;
	yarn)
		if grep -q '^__metadata:' "$build_dir/yarn.lock"; then
			[[ -n $wanted_version ]] ||
				die "yarn.lock was written by Yarn 2 or newer: name the release in package.json, e.g. \"packageManager\": \"yarn@4.5.0\"."
			YARN_BERRY=yes
			PM_COMMAND=(npm exec --yes "--package=@yarnpkg/cli-dist@$wanted_version" -- yarn)
		else
			YARN_BERRY=no
			PM_COMMAND=(npm exec --yes "--package=yarn@${wanted_version:-1}" -- yarn)
		fi
		;;
	pnpm)
		export npm_config_store_dir=$NODE_CACHE/pnpm-store
		PM_COMMAND=(npm exec --yes "--package=pnpm@${wanted_version:-$(pnpm_for_lockfile "$build_dir")}" -- pnpm)
		;;
	esac
}

# The pnpm major that writes the lockfile's format, for apps that do not name a release.
pnpm_for_lockfile() {
	local version
	version=$(sed -n "s/^lockfileVersion: *'\{0,1\}\([0-9]*\).*/\1/p" "$1/pnpm-lock.yaml" | head -n1)
	case $version in
	5) echo 7 ;;
	6) echo 8 ;;
	*) echo 9 ;;
	esac
}

describe_install() {
	case $PM:$LOCKFILE in
	npm:) echo "npm install (no package-lock.json)" ;;
	npm:*) echo "npm ci ($LOCKFILE)" ;;
	yarn:*) echo "yarn install ($LOCKFILE)" ;;
	pnpm:*) echo "pnpm install ($LOCKFILE)" ;;
	esac
}

# Installs dependencies and devDependencies (the build may need them; they are pruned after).
install_dependencies() {
	local build_dir=$1
	case $PM in
	npm)
		if [[ -n $LOCKFILE ]]; then
			run_indented "npm ci" env -C "$build_dir" npm ci --include=dev --no-audit --no-fund
		else
			run_indented "npm install" env -C "$build_dir" npm install --include=dev --no-audit --no-fund
		fi
		;;
	yarn)
		if [[ $YARN_BERRY == yes ]]; then
			run_indented "yarn install" env -C "$build_dir" "${PM_COMMAND[@]}" install --immutable
		else
			run_indented "yarn install" env -C "$build_dir" "${PM_COMMAND[@]}" install \
				--frozen-lockfile --production=false --non-interactive
		fi
		;;
	pnpm)
		run_indented "pnpm install" env -C "$build_dir" "${PM_COMMAND[@]}" install \
			--frozen-lockfile --prod=false
		;;
	esac
}

run_script() {
	local build_dir=$1 name=$2
	puts_sub "Running $name (package.json scripts)"
	case $PM in
	npm) run_indented "npm run $name" env -C "$build_dir" npm run "$name" ;;
	*) run_indented "$PM run $name" env -C "$build_dir" "${PM_COMMAND[@]}" run "$name" ;;
	esac
}

prune_dev_dependencies() {
	local build_dir=$1
	case $PM in
	npm) run_indented "npm prune" env -C "$build_dir" npm prune --omit=dev --no-audit --no-fund ;;
	yarn)
		if [[ $YARN_BERRY == yes ]]; then
			run_indented "yarn workspaces focus" env -C "$build_dir" "${PM_COMMAND[@]}" workspaces focus --all --production
		else
			run_indented "yarn install --production" env -C "$build_dir" "${PM_COMMAND[@]}" install \
				--frozen-lockfile --production=true --ignore-scripts --prefer-offline --non-interactive
		fi
		;;
	pnpm) run_indented "pnpm prune" env -C "$build_dir" "${PM_COMMAND[@]}" prune --prod ;;
	esac
}
