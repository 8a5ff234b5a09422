// Run face-api's own FaceRecognitionNet (dlib's face-recognition ResNet, TF.js weights) in Node with tfjs 4.22's
// WASM backend; the reference side of scripts/port/convert_dlib_resnet.py.
//
//   NODE_PATH=<prefix>/node_modules node faceapi_recognition_run.cjs MODEL_DIR FACES.u8 N OUTDIR
//
// MODEL_DIR holds face_recognition_model-weights_manifest.json + .bin (the npm package's model/ folder).
// FACES.u8 is N * 150 * 150 * 3 RGB bytes (row-major faces). face-api's FaceRecognitionNet.forward runs on them
// unchanged: its own input code (src/dom/NetInput.ts: no resize at 150 px; src/faceRecognitionNet: minus the
// RGB means [122.782, 117.001, 104.298], divided by 255) and its own layers. Written: OUTDIR/descriptors.f32
// (N x 128) and OUTDIR/lattice.f32 (N x h x w x 256, NHWC): the lattice face-api averages before its FC layer,
// caught by wrapping Tensor.prototype.mean for the duration of the forward pass (face-api's forwardInput calls
// out.mean([1, 2]) once, on that lattice). OUTDIR/outputs.json gives shapes and versions.
'use strict';

const fs = require('fs');
const path = require('path');

async function main() {
  const [modelDir, facesPath, nArg, outDir] = process.argv.slice(2);
  if (!modelDir || !facesPath || !nArg || !outDir) {
    console.error('usage: faceapi_recognition_run.cjs MODEL_DIR FACES.u8 N OUTDIR');
    process.exit(2);
  }
  const tf = require('@tensorflow/tfjs');
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  wasm.setThreadsCount(1);
  await tf.setBackend('wasm');
  await tf.ready();
  const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const N = Number(nArg);
  const S = 150;
  const raw = fs.readFileSync(facesPath);
  if (raw.length !== N * S * S * 3) throw new Error(`${facesPath}: ${raw.length} bytes, expected ${N}*${S}*${S}*3`);
  const faces = tf.tensor4d(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), [N, S, S, 3], 'int32');
  const list = tf.unstack(faces); // N tensors (150, 150, 3): a batch input to face-api

  const proto = Object.getPrototypeOf(faces);
  const mean = proto.mean;
  const caught = [];
  proto.mean = function (...args) {
    if (this.rank === 4) caught.push(tf.keep(this.clone()));
    return mean.apply(this, args);
  };
  let desc;
  try {
    desc = faceapi.nets.faceRecognitionNet.forwardInput(await faceapi.toNetInput(list));
  } finally {
    proto.mean = mean;
  }
  if (caught.length !== 1) throw new Error(`expected one 4-d mean in the forward pass, caught ${caught.length}`);
  fs.mkdirSync(outDir, { recursive: true });
  const d = await desc.data();
  const l = await caught[0].data();
  fs.writeFileSync(path.join(outDir, 'descriptors.f32'), Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  fs.writeFileSync(path.join(outDir, 'lattice.f32'), Buffer.from(l.buffer, l.byteOffset, l.byteLength));
  const pkg = JSON.parse(fs.readFileSync(path.join(require.resolve('@vladmandic/face-api/dist/face-api.node-wasm.js'), '../../package.json'), 'utf8'));
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify({
    backend: tf.getBackend(), tfjs: tf.version.tfjs, face_api: pkg.version,
    descriptors: desc.shape, lattice: caught[0].shape,
  }));
}
main().catch((e) => { console.error(e); process.exit(1); });
