// Run a TF.js graph model (model.json + weight shards) with tfjs 4.22's WASM backend and dump chosen nodes.
// The reference side of lanfer's weight ports: the original graph, executed by the original runtime.
//
//   NODE_PATH=<prefix>/node_modules node tfjs_graph_run.cjs MODEL.json INPUT.f32 N,H,W,C OUTDIR node1 [node2 ...]
//
// INPUT.f32 is raw little-endian float32 NHWC, already preprocessed as the graph expects. For each node
// name, OUTDIR/<i>.f32 (raw float32) is written, and OUTDIR/outputs.json lists names and shapes.
const fs = require("fs");
const path = require("path");
const tf = require("@tensorflow/tfjs");
require("@tensorflow/tfjs-backend-wasm");

async function main() {
  const [modelPath, inputPath, shapeArg, outDir, ...nodes] = process.argv.slice(2);
  if (!modelPath || !inputPath || !shapeArg || !outDir || nodes.length === 0) {
    console.error("usage: tfjs_graph_run.cjs MODEL.json INPUT.f32 N,H,W,C OUTDIR NODE [NODE ...]");
    process.exit(2);
  }
  await tf.setBackend("wasm");
  await tf.ready();
  const json = JSON.parse(fs.readFileSync(modelPath, "utf8"));
  // The converter pins the placeholder to the training size (224); a convolutional body runs at any size, so
  // free the spatial dimensions to check the port at the sizes lanfer trains at (160, 112).
  for (const node of json.modelTopology.node) {
    if (node.op === "Placeholder" && node.attr && node.attr.shape && node.attr.shape.shape) {
      for (const d of node.attr.shape.shape.dim || []) d.size = "-1";
    }
  }
  const dir = path.dirname(modelPath);
  const specs = [];
  const buffers = [];
  for (const group of json.weightsManifest) {
    specs.push(...group.weights);
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: specs, weightData, format: json.format,
    generatedBy: json.generatedBy, convertedBy: json.convertedBy,
  }));
  const shape = shapeArg.split(",").map(Number);
  const raw = fs.readFileSync(inputPath);
  const data = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const x = tf.tensor(data, shape, "float32");
  let outs = model.execute(x, nodes);
  if (!Array.isArray(outs)) outs = [outs];
  fs.mkdirSync(outDir, { recursive: true });
  const meta = [];
  for (let i = 0; i < outs.length; i++) {
    const values = await outs[i].data();
    fs.writeFileSync(path.join(outDir, `${i}.f32`), Buffer.from(values.buffer, values.byteOffset, values.byteLength));
    meta.push({ name: nodes[i], shape: outs[i].shape });
  }
  fs.writeFileSync(path.join(outDir, "outputs.json"), JSON.stringify({ backend: tf.getBackend(), tfjs: tf.version.tfjs, outputs: meta }));
}
main().catch((e) => { console.error(e); process.exit(1); });
