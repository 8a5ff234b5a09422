// Run a TF.js peer's own model on a batch of face crops in Node (tfjs 4.22, WASM backend); called by
// benchmarks/bench_peers.py, which owns the faces, the labels and the scoring.
//
//   NODE_PATH=$CACHE/node/node_modules node benchmarks/peers/tfjs_peers.js PEER FACES.u8 N SIZE OUT.f32 [BATCH]
//
// PEER      face-api | human
// FACES.u8  N * SIZE * SIZE gray bytes (row-major faces, as read from the 48x48 FERPlus PNGs)
// OUT.f32   written: N * 7 float32 probabilities in the peer's own label order (printed in the JSON)
// stdout    one JSON line: labels, version, licence, parameters, model bytes, ms per face, backend, threads
//
// $CACHE/node is scripts/setup_peers.sh's npm prefix. Each peer's preprocessing is its own:
// * face-api: faceapi.nets.faceExpressionNet.predictExpressions(tensors) runs face-api's own code, which pads to
//   square, resizes to 112x112 (tf.image.resizeBilinear, alignCorners false), subtracts the mean
//   [122.782, 117.001, 104.298] and divides by 255 (src/faceFeatureExtractor/FaceFeatureExtractor.ts,
//   src/dom/NetInput.ts). A gray face is given as RGB with the gray value in all three channels.
// * human: its emotion module (src/gear/emotion.ts, predict) is not exported from the bundle, so its six tensor
//   lines are repeated below verbatim on its own graph model (models/emotion.json), fed a face as human's face
//   pipeline hands it over (RGB in 0..1, src/face/facemeshutil.ts divides the crop by 255). The raw output is
//   kept (human itself truncates scores to 2 decimals and drops those under minConfidence 0.1).
'use strict';

const fs = require('fs');
const path = require('path');

const [peer, facesPath, nArg, sizeArg, outPath, batchArg] = process.argv.slice(2);
if (!peer || !outPath) {
  console.error('usage: tfjs_peers.js face-api|human FACES.u8 N SIZE OUT.f32 [BATCH]');
  process.exit(2);
}
const N = Number(nArg);
const SIZE = Number(sizeArg);
const BATCH = Number(batchArg || 64);

function pkgDir(name) {
  // not require.resolve(name + '/package.json'): human's "exports" map does not export its package.json
  const dir = require.resolve.paths(name).map((d) => path.join(d, name)).find((d) => fs.existsSync(path.join(d, 'package.json')));
  if (!dir) throw new Error(`${name} not found (NODE_PATH=${process.env.NODE_PATH || ''}): run bash scripts/setup_peers.sh node`);
  return dir;
}

function pkgInfo(name) {
  const p = JSON.parse(fs.readFileSync(path.join(pkgDir(name), 'package.json'), 'utf8'));
  return { name: p.name, version: p.version, license: p.license };
}

function countParams(weights) {
  return weights.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1), 0);
}

async function main() {
  const tf = require('@tensorflow/tfjs');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  wasm.setThreadsCount(1); // one thread, as every other row of the table (before the backend starts)
  await tf.setBackend('wasm');
  await tf.ready();

  const faces = fs.readFileSync(facesPath);
  if (faces.length !== N * SIZE * SIZE) throw new Error(`${facesPath}: ${faces.length} bytes, expected ${N}*${SIZE}*${SIZE}`);
  const out = new Float32Array(N * 7);
  let labels;
  let info;
  let params;
  let modelBytes;
  let run; // (Tensor4D of B gray faces, (B, SIZE, SIZE, 1) int32 0..255) -> Float32Array of B*7

  if (peer === 'face-api') {
    const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
    const dir = path.join(pkgDir('@vladmandic/face-api'), 'model');
    await faceapi.nets.faceExpressionNet.loadFromDisk(dir);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'face_expression_model-weights_manifest.json'), 'utf8'));
    params = manifest.reduce((s, group) => s + countParams(group.weights), 0);
    modelBytes = fs.statSync(path.join(dir, 'face_expression_model-weights_manifest.json')).size
      + manifest.flatMap((g) => g.paths).reduce((s, p) => s + fs.statSync(path.join(dir, p)).size, 0);
    labels = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised']; // FACE_EXPRESSION_LABELS
    info = pkgInfo('@vladmandic/face-api');
    run = async (gray) => {
      const rgb = tf.tile(gray, [1, 1, 1, 3]); // (B, S, S, 3)
      const list = tf.unstack(rgb); // B tensors (S, S, 3): a batch input to face-api
      const res = await faceapi.nets.faceExpressionNet.predictExpressions(list);
      tf.dispose([rgb, ...list]);
      const batch = Array.isArray(res) ? res : [res];
      return Float32Array.from(batch.flatMap((e) => labels.map((l) => e[l])));
    };
  } else if (peer === 'human') {
    const dir = path.join(pkgDir('@vladmandic/human'), 'models');
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'emotion.json'), 'utf8'));
    const specs = json.weightsManifest.flatMap((g) => g.weights);
    const bins = json.weightsManifest.flatMap((g) => g.paths).map((p) => fs.readFileSync(path.join(dir, p)));
    const data = Buffer.concat(bins);
    const model = await tf.loadGraphModel(tf.io.fromMemory({
      modelTopology: json.modelTopology, weightSpecs: specs,
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
      format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
      userDefinedMetadata: json.userDefinedMetadata,
    }));
    params = countParams(specs);
    modelBytes = fs.statSync(path.join(dir, 'emotion.json')).size + bins.reduce((s, b) => s + b.length, 0);
    // src/gear/emotion.ts, load(): a 1-channel model gets these labels
    if (model.inputs[0].shape[3] !== 1) throw new Error('human emotion.json is not the 1-channel model this script knows');
    labels = ['angry', 'disgust', 'fear', 'happy', 'sad', 'surprise', 'neutral'];
    info = pkgInfo('@vladmandic/human');
    const rgbWeights = tf.tensor1d([0.2989, 0.5870, 0.1140], 'float32'); // src/tfjs/constants.ts: constants.rgb
    const tf05 = tf.scalar(0.5, 'float32');
    const tf2 = tf.scalar(2.0, 'float32');
    const inputSize = model.inputs[0].shape[2];
    run = async (gray) => {
      const t = {};
      t.rgb = tf.tile(gray, [1, 1, 1, 3]);
      t.image = tf.div(tf.cast(t.rgb, 'float32'), 255); // the face tensor human's pipeline passes (0..1 RGB)
      // from here on, src/gear/emotion.ts predict() (crop option unset, the default)
      t.resize = tf.image.resizeBilinear(t.image, [inputSize, inputSize], false);
      t.channels = tf.mul(t.resize, rgbWeights);
      t.grayscale = tf.sum(t.channels, 3, true);
      t.grayscaleSub = tf.sub(t.grayscale, tf05);
      t.grayscaleMul = tf.mul(t.grayscaleSub, tf2);
      t.emotion = model.execute(t.grayscaleMul);
      const probs = await t.emotion.data();
      Object.keys(t).forEach((k) => tf.dispose(t[k]));
      return probs;
    };
  } else {
    throw new Error(`unknown peer ${peer}: face-api or human`);
  }

  const batchTensor = (start, stop) => tf.tensor4d(
    Int32Array.from(faces.subarray(start * SIZE * SIZE, stop * SIZE * SIZE)), [stop - start, SIZE, SIZE, 1], 'int32');
  // warm-up (kernels compiled, buffers allocated) outside the timing
  const warm = batchTensor(0, Math.min(BATCH, N));
  await run(warm);
  tf.dispose(warm);
  let ms = 0;
  for (let start = 0; start < N; start += BATCH) {
    const stop = Math.min(N, start + BATCH);
    const x = batchTensor(start, stop);
    const t0 = process.hrtime.bigint();
    const probs = await run(x);
    ms += Number(process.hrtime.bigint() - t0) / 1e6;
    tf.dispose(x);
    if (probs.length !== (stop - start) * 7) throw new Error(`${peer}: ${probs.length} outputs for ${stop - start} faces`);
    out.set(probs, start * 7);
  }
  fs.writeFileSync(outPath, Buffer.from(out.buffer));
  const tfjs = pkgInfo('@tensorflow/tfjs');
  console.log(JSON.stringify({
    peer, labels, package: info.name, version: info.version, license: info.license, params, model_bytes: modelBytes,
    ms_per_face: ms / N, batch: BATCH, n: N,
    runtime: `node ${process.versions.node}, tfjs ${tfjs.version} (${tf.getBackend()} backend, ${wasm.getThreadsCount ? wasm.getThreadsCount() : 1} thread)`,
  }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(1);
});
