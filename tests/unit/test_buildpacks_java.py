"""The Java buildpack, run for real on the host with the stack's JDK and Maven (Debian
openjdk-17-jdk-headless, maven, and the plugin packages that fill /usr/share/maven-repo).

Maven Central is not reachable from builders: the example builds offline against the stack's
Maven repository. Gradle is tried through a wrapper stand-in (the real wrapper downloads Gradle).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_buildpacks import (
    BUILDPACKS,
    REPO,
    SYSTEM_PATH,
    Finished,
    compile_app,
    detect,
    make_app,
    parse_release,
    release,
    run,
)
from test_buildpacks_nodejs import copy_app, dyno_log, heroku_style, serve_like_a_dyno

JAVA = BUILDPACKS / "java"
EXAMPLE = REPO / "examples" / "java-http"
GRADLE_WRAPPER = REPO / "tests" / "fixtures" / "buildpacks" / "java-gradle-wrapper"


def files_under(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


@dataclass(frozen=True)
class Builds:
    cache: Path
    cold: Finished
    repository_after_cold: set[str]
    warm_app: Path
    warm: Finished
    repository_after_warm: set[str]


@pytest.fixture(scope="module")
def java_http(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    root = tmp_path_factory.mktemp("java")
    app, cache = root / "app", root / "cache"
    copy_app(EXAMPLE, app)
    cold = compile_app(app, cache, SYSTEM_PATH, buildpack=JAVA)
    assert cold.returncode == 0, cold.output
    after_cold = files_under(cache / "java" / "m2")
    app.rename(root / "cold-app")
    copy_app(EXAMPLE, app)
    warm = compile_app(app, cache, SYSTEM_PATH, buildpack=JAVA)
    assert warm.returncode == 0, warm.output
    return Builds(cache, cold, after_cold, app, warm, files_under(cache / "java" / "m2"))


def runnable_jar(path: Path, main_class: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = "Manifest-Version: 1.0\n" + (f"Main-Class: {main_class}\n" if main_class else "")
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)


@pytest.mark.parametrize("manifest", ["pom.xml", "gradlew", "build.gradle", "build.gradle.kts"])
def test_detect_claims_maven_and_gradle_projects(tmp_path: Path, manifest: str):
    app = make_app(tmp_path / "app", {manifest: ""})
    result = detect(JAVA, app)
    assert (result.returncode, result.stdout) == (0, "Java\n")


def test_failed_detect_lists_what_it_looked_for(tmp_path: Path):
    app = make_app(tmp_path / "app", {"Main.java": "", "build.xml": ""})
    result = detect(JAVA, app)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no pom.xml, gradlew, build.gradle or build.gradle.kts" in result.stderr


def test_maven_builds_the_example_offline_from_the_stacks_repository(java_http: Builds):
    lines = java_http.cold.output.splitlines()
    assert lines[0] == "-----> Java app detected"
    heroku_style(java_http.cold.output)
    assert "-----> Executing Maven: mvn -DskipTests package" in lines
    assert "       [INFO] BUILD SUCCESS" in lines
    assert (java_http.warm_app / "target" / "java-http.jar").is_file()
    # The plugins came from the stack's repository into the cached ~/.m2, not the slug.
    assert any("maven-compiler-plugin" in f for f in java_http.repository_after_cold)
    assert not (java_http.warm_app / ".m2").exists()


def test_warm_build_resolves_nothing_new(java_http: Builds):
    assert "       [INFO] BUILD SUCCESS" in java_http.warm.output
    # Every artifact Maven resolves lands in the local repository: a warm build adds none.
    assert java_http.repository_after_warm == java_http.repository_after_cold


def test_example_serves_with_the_default_web_process(java_http: Builds, tmp_path: Path):
    web = parse_release(release(JAVA, java_http.warm_app).stdout)["web"]
    assert web == "java -Dserver.port=$PORT $JAVA_OPTS -jar target/java-http.jar"
    with serve_like_a_dyno(java_http.warm_app, web, tmp_path) as served:
        status, _, body = served.get("/")
    assert (status, body) == (200, "Hello from Java on waka! Java 17\n")
    assert "java-http: served /" in dyno_log(tmp_path)


def test_profile_script_points_at_the_stacks_jdk(java_http: Builds):
    text = (java_http.warm_app / ".profile.d" / "java.sh").read_text()
    assert 'export JAVA_HOME="${JAVA_HOME:-/usr/lib/jvm/java-17-openjdk-' in text
    assert str(java_http.warm_app) not in text


def test_missing_dependency_fails_with_mavens_error(java_http: Builds, tmp_path: Path):
    app = copy_app(EXAMPLE, tmp_path / "app")
    pom = app / "pom.xml"
    pom.write_text(
        pom.read_text().replace(
            "  <build>",
            "  <dependencies><dependency><groupId>dev.waka</groupId>"
            "<artifactId>no-such-artifact</artifactId><version>1.0</version></dependency>"
            "</dependencies>\n  <build>",
        )
    )
    result = compile_app(app, java_http.cache, SYSTEM_PATH, buildpack=JAVA)
    assert result.returncode == 1
    assert "Could not resolve dependencies" in result.output
    assert "dev.waka:no-such-artifact:jar:1.0" in result.output
    assert "mvn package failed (exit status 1)" in result.output


def test_project_settings_xml_is_the_one_maven_reads(java_http: Builds, tmp_path: Path):
    app = copy_app(EXAMPLE, tmp_path / "app")
    (app / "settings.xml").write_text("<settings><mirrors></settings>\n")
    result = compile_app(app, java_http.cache, SYSTEM_PATH, buildpack=JAVA)
    assert "Using the project's settings.xml" in result.output
    assert result.returncode == 1
    assert re.search(r"Non-parseable settings .*/app/settings\.xml", result.output), result.output


def test_java_release_the_stack_lacks_fails_listing_what_it_has(tmp_path: Path):
    app = make_app(
        tmp_path / "app", {"pom.xml": "", "system.properties": "java.runtime.version=1.8\n"}
    )
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=JAVA)
    assert result.returncode == 1
    assert (
        "system.properties asks for Java 8, but this stack provides only Java 17" in result.output
    )


def test_gradle_projects_build_through_their_wrapper(tmp_path: Path):
    app = copy_app(GRADLE_WRAPPER, tmp_path / "app")
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=JAVA)
    assert result.returncode == 0, result.output
    assert "-----> Executing Gradle: ./gradlew build -x check" in result.output
    called = (app / "gradlew-called").read_text()
    assert (
        called
        == f"gradlew --no-daemon build -x check (GRADLE_USER_HOME={tmp_path}/cache/java/gradle)\n"
    )
    # build/libs has a plain jar too: the runnable one is the default.
    web = parse_release(release(JAVA, app).stdout)["web"]
    assert web.endswith("-jar build/libs/demo.jar")
    ran = run(["java", "-jar", app / "build" / "libs" / "demo.jar"], {"PATH": SYSTEM_PATH})
    assert ran.stdout == "built by the Gradle wrapper stand-in\n"


def test_gradle_project_without_a_wrapper_fails_saying_so(tmp_path: Path):
    app = make_app(tmp_path / "app", {"build.gradle": ""})
    result = compile_app(app, tmp_path / "cache", SYSTEM_PATH, buildpack=JAVA)
    assert result.returncode == 1
    assert "This Gradle project has no wrapper" in result.output


@pytest.mark.parametrize(
    ("jars", "web"),
    [
        ({"target/app.jar": "demo.Main", "target/app-sources.jar": None}, "target/app.jar"),
        ({"target/app.jar": "demo.Main", "target/original-app.jar": "demo.Main"}, "target/app.jar"),
        ({"target/lib.jar": None}, None),
        ({"target/a.jar": "demo.A", "target/b.jar": "demo.B"}, None),
        ({}, None),
    ],
    ids=["one-runnable", "shaded-original", "not-runnable", "two-runnable", "no-jar"],
)
def test_release_offers_java_jar_only_for_a_single_runnable_jar(
    tmp_path: Path, jars: dict[str, str | None], web: str | None
):
    app = make_app(tmp_path / "app", {"pom.xml": ""})
    for name, main_class in jars.items():
        runnable_jar(app / name, main_class)
    result = release(JAVA, app)
    assert result.returncode == 0, result.stderr
    expected = {"web": f"java -Dserver.port=$PORT $JAVA_OPTS -jar {web}"} if web else {}
    assert parse_release(result.stdout) == expected
