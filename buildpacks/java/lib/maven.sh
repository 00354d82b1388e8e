# shellcheck shell=bash
# Maven builds with the stack's Maven, offline-capable.
#
# The stack's Maven repository (/usr/share/maven-repo: Debian's packaged Java libraries and
# Maven plugins, e.g. from libmaven-compiler-plugin-java) is added ahead of Maven Central in a
# generated global settings file, so a project whose plugins the stack packages builds without
# reaching Central. The project's own settings.xml (its mirrors, its offline repository) is used
# as the user settings; the local repository (~/.m2/repository) is CACHE_DIR/java/m2.

STACK_MAVEN_REPO=/usr/share/maven-repo

write_stack_settings() {
	local file=$1
	if [[ ! -d $STACK_MAVEN_REPO ]]; then
		printf '<settings/>\n' >"$file"
		return 0
	fi
	# Debian's repository has no checksum files; its files come from signed packages.
	cat >"$file" <<SETTINGS
<settings>
  <profiles>
    <profile>
      <id>waka-stack-repository</id>
      <repositories>
        <repository>
          <id>stack</id>
          <url>file://$STACK_MAVEN_REPO</url>
          <releases><checksumPolicy>ignore</checksumPolicy></releases>
          <snapshots><enabled>false</enabled></snapshots>
        </repository>
      </repositories>
      <pluginRepositories>
        <pluginRepository>
          <id>stack</id>
          <url>file://$STACK_MAVEN_REPO</url>
          <releases><checksumPolicy>ignore</checksumPolicy></releases>
          <snapshots><enabled>false</enabled></snapshots>
        </pluginRepository>
      </pluginRepositories>
    </profile>
  </profiles>
  <activeProfiles>
    <activeProfile>waka-stack-repository</activeProfile>
  </activeProfiles>
</settings>
SETTINGS
}

# Read from the installed maven-core jar: asking mvn itself costs a JVM start (seconds).
maven_version() {
	local mvn_home
	mvn_home=$(dirname "$(dirname "$(readlink -f "$(command -v mvn)")")")
	python3 - "$mvn_home"/lib/maven-core-*.jar <<'PY' 2>/dev/null || echo "(unknown version)"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as jar:
    text = jar.read("META-INF/maven/org.apache.maven/maven-core/pom.properties").decode()
print(next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("version=")))
PY
}

build_with_maven() {
	local java_cache=$CACHE_DIR/java settings=() goals options
	command -v mvn >/dev/null || die "This stack has no Maven (Debian's maven package provides it)."
	mkdir -p "$java_cache/m2"
	write_stack_settings "$java_cache/stack-settings.xml"
	if [[ -f $BUILD_DIR/settings.xml ]]; then
		settings=(-s "$BUILD_DIR/settings.xml")
		puts_sub "Using the project's settings.xml"
	fi
	# Heroku's config vars for the command line.
	goals=${MAVEN_CUSTOM_GOALS:-package}
	options=${MAVEN_CUSTOM_OPTS:--DskipTests}
	puts_sub "Using Maven $(maven_version) (the stack's)"
	puts_step "Executing Maven: mvn $options $goals"
	# shellcheck disable=SC2086 # the goals and options are word lists, as on Heroku
	run_indented "mvn $goals" env -C "$BUILD_DIR" mvn -B --no-transfer-progress -Dstyle.color=never \
		-Dmaven.repo.local="$java_cache/m2" -gs "$java_cache/stack-settings.xml" \
		${settings[@]+"${settings[@]}"} $options $goals
}
