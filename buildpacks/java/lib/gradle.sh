# shellcheck shell=bash
# Gradle builds through the project's wrapper (gradlew), which fetches the Gradle release the
# project names: the stack's Debian gradle is far too old to build current projects.

build_with_gradle() {
	local task=${GRADLE_TASK:-build -x check}
	[[ -f $BUILD_DIR/gradlew ]] ||
		die "This Gradle project has no wrapper: add one (gradle wrapper) and commit gradlew and gradle/wrapper/."
	chmod +x "$BUILD_DIR/gradlew"
	export GRADLE_USER_HOME=$CACHE_DIR/java/gradle
	mkdir -p "$GRADLE_USER_HOME"
	puts_step "Executing Gradle: ./gradlew $task"
	# shellcheck disable=SC2086 # the task is a word list, as on Heroku
	run_indented "./gradlew $task" env -C "$BUILD_DIR" ./gradlew --no-daemon $task
}
