const fs = require("fs");
const express = require("express");

const GREETING = "Hello from Express on waka!";
const builtWith = fs.readFileSync(`${__dirname}/build/built-with.txt`, "utf8").trim();
const app = express();

app.get("/", (req, res) => {
  console.log(`node-express: served ${req.path}`);
  res.type("text/plain").send(`${GREETING} ${builtWith}, running ${process.version}\n`);
});

const port = Number(process.env.PORT || 5000);
app.listen(port, "0.0.0.0", () => console.log(`node-express: listening on ${port}`));
