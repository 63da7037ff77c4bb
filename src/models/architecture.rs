//! The real models' parameter shapes (the tables in `shapes/`, one `name size size ...` line
//! per tensor the builder reads, taken from the published weights), so that a model's layers
//! and output shapes can be listed without its weights.

use std::collections::HashMap;

use super::ModelKind;

/// Every parameter `kind`'s builder reads, with its shape.
pub(super) fn shapes(kind: ModelKind) -> HashMap<String, Vec<usize>> {
    let table = match kind {
        ModelKind::EfficientNetLite0 => include_str!("shapes/efficientnet_lite0.txt"),
        ModelKind::Vgg19 => include_str!("shapes/vgg19.txt"),
        ModelKind::GoogLeNet => include_str!("shapes/googlenet.txt"),
    };
    table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().expect("a tensor name starts each line").to_string();
            (name, words.map(|w| w.parse().expect("sizes are numbers")).collect())
        })
        .collect()
}
