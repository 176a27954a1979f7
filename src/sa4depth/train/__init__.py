"""Training: self-supervised objectives (pipelines), the model that wires nets and LM, the Lightning module.

`objectives` holds the loss recipes; `model` runs one training forward; `system` adds Lightning.
"""
