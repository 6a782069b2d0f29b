"""asr-kd: knowledge distillation of hybrid DNN-HMM acoustic-model ensembles."""

__version__ = "0.1.0"
