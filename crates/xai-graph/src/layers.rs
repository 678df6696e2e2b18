//! [`LayerModel`] for [`GraphModel`]: the activation of any value a node computes (named by the
//! value, e.g. `/conv2/Conv_output_0`, or by the node, e.g. `/conv2/Conv`) and the gradient of
//! the weighted outputs with respect to it, chunk by chunk like the model's other passes.

use ndarray::{s, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn};
use rayon::prelude::*;
use xai_core::{unknown_layer, CoreError, LayerModel};

use crate::error::GraphError;
use crate::model::GraphModel;
use crate::value::Value;

impl LayerModel for GraphModel {
    /// Every value a node of the graph computes, in evaluation order (constant-folded nodes
    /// are not listed). A node's name is accepted too, for its first output.
    fn layer_names(&self) -> Vec<String> {
        self.graph().node_output_names()
    }

    fn layer_activation_and_gradient(
        &self,
        x: ArrayViewD<'_, f32>,
        layer: &str,
        output_weights: ArrayView2<'_, f32>,
    ) -> xai_core::Result<(ArrayD<f32>, ArrayD<f32>)> {
        let n = xai_core::check_layer_request(self, &x, output_weights)?;
        let graph = self.graph();
        let slot = graph
            .computed_slot(layer)
            .ok_or_else(|| unknown_layer(layer, &self.layer_names()))?;
        let parts: Vec<(ArrayD<f32>, ArrayD<f32>)> = self
            .chunks(n)
            .into_par_iter()
            .map(|(a, b)| -> xai_core::Result<(ArrayD<f32>, ArrayD<f32>)> {
                let xc = x.slice_axis(Axis(0), (a..b).into());
                let (tape, _) = self.forward_chunk(xc)?;
                let activation = match graph.tape_value(&tape, slot) {
                    Some(Value::F32(v)) => v,
                    Some(Value::I64(_)) => {
                        return Err(CoreError::param(
                            "layer",
                            format!("`{layer}`"),
                            "a float activation (this value holds integers)",
                        ))
                    }
                    None => {
                        return Err(GraphError::Invalid(format!(
                            "the value `{layer}` was not computed"
                        ))
                        .into())
                    }
                };
                let rows = b - a;
                if activation.ndim() == 0 || activation.shape()[0] < rows {
                    return Err(CoreError::param(
                        "layer",
                        format!("`{layer}` (shape {:?})", activation.shape()),
                        format!("an activation with the batch ({rows} samples) on its first axis"),
                    ));
                }
                let g = self.output_grad(&tape, output_weights.slice(s![a..b, ..]))?;
                let mut target = vec![false; graph.n_slots()];
                target[slot] = true;
                let mut grads = graph.backward_to(&tape, self.first_output_grads(g), target)?;
                let grad = grads[slot]
                    .take()
                    .unwrap_or_else(|| ArrayD::zeros(activation.raw_dim()));
                let keep = |v: &ArrayD<f32>| v.slice_axis(Axis(0), (0..rows).into()).to_owned();
                Ok((keep(activation), keep(&grad)))
            })
            .collect::<xai_core::Result<_>>()?;
        let (acts, grads): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
        Ok((concat(acts)?, concat(grads)?))
    }
}

fn concat(parts: Vec<ArrayD<f32>>) -> xai_core::Result<ArrayD<f32>> {
    if parts.is_empty() {
        return Ok(ArrayD::zeros(IxDyn(&[0])));
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views)
        .map_err(|e| CoreError::Model(format!("the layer's chunks do not fit together: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attrs, GraphBuilder, NodeDef};
    use ndarray::{arr2, Array2};
    use xai_core::DifferentiableModel;

    /// y = relu(x W) V: the hidden layer `h` and its gradient by hand.
    #[test]
    fn activation_and_gradient_of_a_hidden_value() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0f32, -1.0, 0.5, 2.0, 0.5, -1.0])
            .unwrap();
        let v =
            ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![1.0f32, 0.0, 2.0, 1.0, -1.0, 3.0]).unwrap();
        let node = |op: &str, name: &str, inputs: &[&str], out: &str| NodeDef {
            op_type: op.into(),
            name: name.into(),
            attrs: Attrs::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.into()],
        };
        let graph = GraphBuilder::new()
            .input("x")
            .initializer("W", Value::F32(w))
            .initializer("V", Value::F32(v))
            .node(node("MatMul", "mm1", &["x", "W"], "h"))
            .node(node("Relu", "relu", &["h"], "r"))
            .node(node("MatMul", "mm2", &["r", "V"], "y"))
            .output("y")
            .build()
            .unwrap();
        let model = GraphModel::new(graph, vec![2], None).unwrap();
        assert_eq!(model.layer_names(), vec!["h", "r", "y"]);
        // 10 samples: two chunks of the model.
        let x = Array2::from_shape_fn((10, 2), |(i, j)| (i as f32 - 4.0) * 0.3 + j as f32);
        let wts =
            Array2::from_shape_fn((10, 2), |(i, j)| if (i + j) % 2 == 0 { 1.0 } else { -0.5 });
        let (h, gh) = model
            .layer_activation_and_gradient(x.view().into_dyn(), "h", wts.view())
            .unwrap();
        // By node name: the same value.
        let (h2, _) = model
            .layer_activation_and_gradient(x.view().into_dyn(), "mm1", wts.view())
            .unwrap();
        assert_eq!(h, h2);
        let wm = arr2(&[[1.0f32, -1.0, 0.5], [2.0, 0.5, -1.0]]);
        let vm = arr2(&[[1.0f32, 0.0], [2.0, 1.0], [-1.0, 3.0]]);
        let h_expected = x.dot(&wm);
        assert!(h
            .iter()
            .zip(h_expected.iter())
            .all(|(a, b)| (a - b).abs() < 1e-5));
        // dL/dh = (w V^T) * relu'(h).
        let gr = wts.dot(&vm.t());
        for i in 0..10 {
            for j in 0..3 {
                let e = if h_expected[[i, j]] > 0.0 {
                    gr[[i, j]]
                } else {
                    0.0
                };
                assert!((gh[[i, j]] - e).abs() < 1e-5, "{i} {j}");
            }
        }
        // The input gradient through the same pass agrees: dL/dx = dL/dh W^T.
        let gx = model
            .input_gradient(x.view().into_dyn(), wts.view())
            .unwrap();
        let gh2 = gh.into_dimensionality::<ndarray::Ix2>().unwrap();
        let gx_expected = gh2.dot(&wm.t());
        assert!(gx
            .iter()
            .zip(gx_expected.iter())
            .all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn unknown_layers_and_wrong_weights_are_errors() {
        let graph = GraphBuilder::new()
            .input("x")
            .node(NodeDef {
                op_type: "Relu".into(),
                name: "relu".into(),
                attrs: Attrs::new(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
            })
            .output("y")
            .build()
            .unwrap();
        let model = GraphModel::new(graph, vec![2], None).unwrap();
        let x = arr2(&[[1.0f32, -1.0]]);
        let err = model
            .layer_activation_and_gradient(
                x.view().into_dyn(),
                "nope",
                arr2(&[[1.0f32, 1.0]]).view(),
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("`nope`") && err.to_string().contains("y"),
            "{err}"
        );
        let err = model
            .layer_activation_and_gradient(x.view().into_dyn(), "y", arr2(&[[1.0f32]]).view())
            .unwrap_err();
        assert!(err.to_string().contains("output weights"), "{err}");
    }
}
