// The build step (`npm run build`): runs once at deploy time, its output ships in the slug.
const fs = require("fs");

fs.mkdirSync("build", { recursive: true });
fs.writeFileSync("build/built-with.txt", `built with Node.js ${process.version}\n`);
