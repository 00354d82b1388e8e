# shellcheck shell=bash
# Choosing the JDK: the stack's own (Debian's openjdk-N-jdk-headless under /usr/lib/jvm), never a
# downloaded one, so dynos run on the JDK the app was compiled with.

STACK_JVM_DIR=/usr/lib/jvm

# Major versions of the JDKs the stack has (a javac in /usr/lib/jvm/java-N-*), one per line.
stack_jdk_majors() {
	local dir
	for dir in "$STACK_JVM_DIR"/java-*-openjdk-*; do
		[[ -x $dir/bin/javac && ${dir##*/} =~ ^java-([0-9]+)-openjdk ]] && echo "${BASH_REMATCH[1]}"
	done | sort -n -u
}

# system.properties' java.runtime.version (Heroku's file): "17", "1.8", "21.0.2"... as a major.
requested_jdk_major() {
	local file=$1/system.properties raw
	[[ -f $file ]] || return 0
	raw=$(sed -n 's/^[[:space:]]*java\.runtime\.version[[:space:]]*[=:][[:space:]]*\([^[:space:]]*\).*/\1/p' "$file" | head -n1)
	[[ -n $raw ]] || return 0
	raw=${raw#zulu-}
	raw=${raw#1.}
	echo "${raw%%[!0-9]*}"
}

# Sets JAVA_HOME and JDK_MAJOR; dies listing what the stack has when the app asks for another.
select_jdk() {
	local build_dir=$1 wanted provided javac dir
	wanted=$(requested_jdk_major "$build_dir")
	provided=$(stack_jdk_majors)
	if [[ -n $wanted ]]; then
		grep -qxF "$wanted" <<<"$provided" ||
			die "system.properties asks for Java $wanted, but this stack provides only Java $(paste -sd, <<<"$provided" | sed 's/,/, /g')." \
				"Change java.runtime.version to one of those, or remove it to use the stack's default."
		for dir in "$STACK_JVM_DIR"/java-"$wanted"-openjdk-*; do
			[[ -x $dir/bin/javac ]] && JAVA_HOME=$dir && break
		done
		JDK_MAJOR=$wanted
		JDK_CHOSEN_BECAUSE="as asked by system.properties"
	else
		javac=$(command -v javac) || die "This stack has no JDK (Debian's default-jdk-headless provides one)."
		JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$javac")")")
		JDK_MAJOR=$("$JAVA_HOME/bin/javac" -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p')
		JDK_CHOSEN_BECAUSE="the stack's default"
	fi
	export JAVA_HOME
	export PATH="$JAVA_HOME/bin:$PATH"
}

write_profile_script() {
	mkdir -p "$BUILD_DIR/.profile.d"
	{
		echo "# Written by waka's Java buildpack. Config vars are already set: defaults yield to them."
		echo "export JAVA_HOME=\"\${JAVA_HOME:-$JAVA_HOME}\""
		echo 'export PATH="$JAVA_HOME/bin:$PATH"'
		echo '# The JVM sizes its heap from the dyno'"'"'s memory limit (cgroup), not the host'"'"'s.'
		echo 'export JAVA_OPTS="${JAVA_OPTS:--XX:MaxRAMPercentage=80.0 -Dfile.encoding=UTF-8}"'
	} >"$BUILD_DIR/.profile.d/java.sh"
}
