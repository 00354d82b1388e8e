// Chooses the Node.js version for an app, with the semver module that ships inside npm, so a
// range means exactly what it means to npm.
//
//   node node_version.js SEMVER_MODULE_DIR VERSIONS_JSON [RANGE]
//
// VERSIONS_JSON: a JSON array of the versions available (the registry's node-linux-<arch>
// versions, or what the builder has offline). Without a RANGE the choice is the current LTS line.
// Prints the version; exits 3 with a message when nothing matches.
"use strict";

const fs = require("fs");

function ltsMajor(semver, versions) {
  // Node's schedule: an even major enters Active LTS in October, when the next odd major is
  // released. So the LTS line is the newest even major whose successor exists; no dates needed.
  const majors = new Set(versions.map((v) => semver.major(v)));
  const even = [...majors].filter((m) => m % 2 === 0 && majors.has(m + 1));
  if (even.length > 0) return Math.max(...even);
  const anyEven = [...majors].filter((m) => m % 2 === 0);
  return anyEven.length > 0 ? Math.max(...anyEven) : Math.max(...majors);
}

function main(argv) {
  const [semverDir, versionsFile, range] = argv;
  const semver = require(semverDir);
  const versions = [].concat(JSON.parse(fs.readFileSync(versionsFile, "utf8")))
    .filter((v) => semver.valid(v) && !semver.prerelease(v));
  if (versions.length === 0) {
    process.stderr.write("no Node.js versions to choose from\n");
    return 3;
  }
  let wanted = range && range.trim();
  if (!wanted) wanted = `${ltsMajor(semver, versions)}.x`;
  if (semver.validRange(wanted) === null) {
    process.stderr.write(`'${wanted}' is not a semver range\n`);
    return 3;
  }
  const chosen = semver.maxSatisfying(versions, wanted);
  if (chosen === null) {
    const majors = [...new Set(versions.map((v) => semver.major(v)))].sort((a, b) => b - a);
    process.stderr.write(
      `no Node.js release matches '${wanted}' (newest lines: ${majors.slice(0, 6).join(", ")})\n`,
    );
    return 3;
  }
  process.stdout.write(`${chosen}\n`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
