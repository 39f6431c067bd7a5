//! Which networks a method that gates hidden units (HAT) can run on, and how a unit of one layer
//! maps onto the inputs of the next.
//!
//! Gating and conditioning by unit assume a chain: each hidden layer reads only the previous
//! one's output (through activations, pooling, dropout, a flatten), so a unit gated to zero
//! reaches nothing downstream, and a weight's input unit is a unit of the layer before. A skip
//! connection breaks the first, batch norm after a gated layer normalises the gate away. The
//! check is made on the network itself, so a model plugin declares nothing: with one layer's gates
//! all zero, the next layer's input (and, after the last hidden layer, the head's) must be
//! exactly zero, and the layers' widths must line up.

use tch::{Device, Kind, Tensor};

use super::{Net, UnitGates, UnitLayer};

/// Why `net` cannot take unit gates, or `Ok` when it can.
pub fn check_gateable(net: &Net) -> Result<(), String> {
    let hidden = net.hidden_layers();
    if hidden.is_empty() {
        return Err("it has no hidden linear or convolution layer to gate".into());
    }
    if let Some(name) = net.buffers().keys().next() {
        let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l);
        return Err(format!(
            "it has batch norm (`{layer}`), which would normalise a gate away; turn batch norm off \
             or use another model"
        ));
    }
    for pair in hidden.windows(2) {
        input_columns(&pair[0], &pair[1])?;
    }
    let s = net.spec.input;
    let probe = Tensor::rand([2, s.numel()], (Kind::Float, Device::Cpu)).to_device(net.device());
    let names: Vec<String> = hidden
        .iter()
        .map(|l| l.name.clone())
        .chain(["head".to_string()])
        .collect();
    let result = (|| {
        for (k, layer) in hidden.iter().enumerate() {
            let mut gates = UnitGates::new();
            gates.insert(
                layer.name.clone(),
                Tensor::zeros([layer.units], (Kind::Float, net.device())),
            );
            net.set_gates(Some(gates)).map_err(|e| e.to_string())?;
            let (_, records) = tch::no_grad(|| net.forward_recorded(&probe));
            let order: Vec<&str> = records
                .iter()
                .map(|r| r.weight.trim_end_matches(".weight"))
                .collect();
            if order != names {
                return Err(format!(
                    "its layers run in the order {order:?}, not once each in the order they were \
                     built ({names:?})"
                ));
            }
            let next = &records[k + 1];
            if next.input.abs().max().double_value(&[]) != 0.0 {
                let next_name = &names[k + 1];
                return Err(format!(
                    "`{next_name}` reads more than `{}`'s output (a skip connection?): with \
                     `{}` gated off its input is not zero",
                    layer.name, layer.name
                ));
            }
        }
        Ok(())
    })();
    let _ = net.set_gates(None);
    result
}

/// How many input columns of `next` each unit of `previous` feeds: 1 between linear layers and
/// between convolutions (a channel), the spatial positions of a channel from a convolution into a
/// linear layer (the flatten keeps each channel's positions together).
pub fn input_columns(previous: &UnitLayer, next: &UnitLayer) -> Result<i64, String> {
    let mismatch = || {
        format!(
            "`{}` has {} inputs, which do not line up with the {} units of `{}` before it",
            next.name, next.inputs, previous.units, previous.name
        )
    };
    match (previous.conv, next.conv) {
        (false, true) => Err(format!(
            "a convolution (`{}`) follows a linear layer (`{}`)",
            next.name, previous.name
        )),
        (true, false) => {
            if next.inputs % previous.units == 0 {
                Ok(next.inputs / previous.units)
            } else {
                Err(mismatch())
            }
        }
        _ if next.inputs == previous.units => Ok(1),
        _ => Err(mismatch()),
    }
}
