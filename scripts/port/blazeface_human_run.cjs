// Run @vladmandic/human's face detector (BlazeFace, human's own decoding, anchors and NMS in src/face/blazeface.ts)
// with tfjs 4.22's WASM backend on one RGB image, face mesh and every other model off, and write its faces.
// The reference side of lanfer's BlazeFace port: the original pipeline, executed by the original runtime.
//
//   NODE_PATH=<prefix>/node_modules node blazeface_human_run.cjs IMAGE.u8 H,W MODELS_DIR OUT.json '{"minConfidence":0.5,...}'
//
// IMAGE.u8 is raw RGB uint8, row-major (H, W, 3). The JSON argument overrides config.face.detector. OUT.json gets,
// per face, human's box [x, y, width, height] (its detector box enlarged by `scale` and squared, clamped to the
// image), the six detector keypoints in image pixels and the score.
const fs = require("fs");
const path = require("path");

async function main() {
  const [imagePath, shapeArg, modelsDir, outPath, cfgArg] = process.argv.slice(2);
  if (!imagePath || !shapeArg || !modelsDir || !outPath) {
    console.error("usage: blazeface_human_run.cjs IMAGE.u8 H,W MODELS_DIR OUT.json [DETECTOR_CONFIG_JSON]");
    process.exit(2);
  }
  // human's package.json "exports" keys lack the "./" prefix, so Node refuses its subpaths: load the file directly
  const roots = (process.env.NODE_PATH || "").split(path.delimiter).filter(Boolean);
  const humanDir = roots.map((r) => path.join(r, "@vladmandic/human")).find((d) => fs.existsSync(d));
  if (!humanDir) throw new Error(`@vladmandic/human not found in NODE_PATH=${process.env.NODE_PATH}`);
  const H = require(path.join(humanDir, "dist/human.node-wasm.js"));
  const wasmDir = path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm"));
  // human loads models with fetch(), which in Node cannot read file:// URLs: serve the folder on localhost
  const http = require("http");
  const server = http.createServer((req, res) => {
    const file = path.join(path.resolve(modelsDir), path.basename(decodeURIComponent(req.url.split("?")[0])));
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, { "Content-Type": file.endsWith(".json") ? "application/json" : "application/octet-stream" });
      res.end(data);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}/`;
  const detector = { modelPath: "blazeface.json", rotation: false, ...JSON.parse(cfgArg || "{}") };
  const config = {
    backend: "wasm", wasmPath: wasmDir + path.sep, modelBasePath: base,
    debug: false, async: false, warmup: "none", cacheSensitivity: 0, skipAllowed: false,
    filter: { enabled: false }, gesture: { enabled: false }, body: { enabled: false }, hand: { enabled: false },
    object: { enabled: false }, segmentation: { enabled: false },
    face: {
      enabled: true, detector, mesh: { enabled: false }, attention: { enabled: false }, iris: { enabled: false },
      description: { enabled: false }, emotion: { enabled: false }, antispoof: { enabled: false },
      liveness: { enabled: false }, gear: { enabled: false },
    },
  };
  const human = new (H.Human || H.default)(config);
  await human.load();
  const tf = human.tf;
  const [h, w] = shapeArg.split(",").map(Number);
  const raw = fs.readFileSync(imagePath);
  if (raw.length !== h * w * 3) throw new Error(`${imagePath}: ${raw.length} bytes, expected ${h}x${w}x3`);
  const x = tf.tensor(new Int32Array(raw), [1, h, w, 3], "float32");
  const res = await human.detect(x, config);
  const faces = res.face.map((f) => ({ box: f.box, boxRaw: f.boxRaw, score: f.boxScore, keypoints: f.mesh }));
  server.close();
  fs.writeFileSync(outPath, JSON.stringify({
    human: human.version, tfjs: tf.version.tfjs, backend: tf.getBackend(), detector, faces,
  }));
}
main().catch((e) => { console.error(e); process.exit(1); });
