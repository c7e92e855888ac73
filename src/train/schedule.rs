//! Learning rate per step: linear warm-up, then the configured schedule.

use super::config::Schedule;

/// The learning rate for 0-based `step` of `total`, in epoch `epoch`.
pub fn learning_rate(base: f64, schedule: &Schedule, warmup: u64, step: u64, epoch: u64, total: u64) -> f64 {
    let scheduled = match schedule {
        Schedule::Constant => base,
        Schedule::Step { every, gamma } => base * gamma.powi((epoch / every) as i32),
        Schedule::Cosine { min_lr } => {
            let t = step as f64 / total.max(1) as f64;
            min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    };
    if step < warmup {
        scheduled * (step + 1) as f64 / warmup as f64
    } else {
        scheduled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        let cos = Schedule::Cosine { min_lr: 0.0 };
        assert_eq!(learning_rate(0.1, &cos, 0, 0, 0, 100), 0.1);
        assert!((learning_rate(0.1, &cos, 0, 50, 0, 100) - 0.05).abs() < 1e-12);
        let step = Schedule::Step { every: 2, gamma: 0.5 };
        assert_eq!(learning_rate(1.0, &step, 0, 0, 3, 10), 0.5);
        assert_eq!(learning_rate(1.0, &step, 0, 0, 4, 10), 0.25);
        assert_eq!(learning_rate(1.0, &Schedule::Constant, 4, 1, 0, 10), 0.5);
    }
}
