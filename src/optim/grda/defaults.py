"""gRDA's default hyperparameters, in one place: the PyTorch and Keras optimizers and the harness's config schema
read them from here (this module imports nothing, so the Keras optimizer stays importable without torch).

mu 0.51 and c 0.005 are the authors' recommendation (0.5 < mu < 1 for the theory; 0 < c <= 0.005 in the paper);
lr is SGD's usual starting point: use what works for SGD without momentum on the model.
"""

LR = 0.01
C = 0.005
MU = 0.51
