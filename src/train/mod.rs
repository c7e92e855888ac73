//! Training: the step graph (forward, loss, backward, optimizer), learning
//! rate schedules, the `train` section's settings, checkpoints and the loop.

pub mod optim;
pub mod step;
