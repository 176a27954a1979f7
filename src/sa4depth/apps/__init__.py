"""The user-facing applications: the ``sa4depth`` command line and what it runs on trained checkpoints.

cli, demo, predict, export, pointcloud, report, visualize, evaluate (odometry of a checkpoint) and bench
import the core (geometry, models, refine, losses, config, data, eval, train); the core never imports them.
"""
