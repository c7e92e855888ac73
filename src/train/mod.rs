//! Training: the step graph (forward, loss, backward, optimizer), learning
//! rate schedules, the `train` section's settings, checkpoints and the loop.

pub mod checkpoint;
pub mod config;
pub mod optim;
pub mod schedule;
pub mod session;
pub mod step;
