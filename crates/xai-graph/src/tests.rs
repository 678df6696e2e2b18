//! Graph- and model-level tests: building (ordering, folding, pruning, parameters, errors),
//! and `GraphModel` against finite differences, one-sample passes and the batch gradient.

use ndarray::{Array2, ArrayD, IxDyn};
use xai_core::{DifferentiableModel, Loss, OutputKind, ParamSelection, Predictor, Targets};

use crate::testing::random_input;
use crate::{Attr, Attrs, GraphBuilder, GraphError, GraphModel, NodeDef, Value, Wanted};

fn node(op: &str, inputs: &[&str], output: &str, attrs: Attrs) -> NodeDef {
    NodeDef {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        attrs,
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
    }
}

/// x [n, 2, 6, 6] -> Conv(3x3, pad 1) -> BatchNorm -> Relu -> MaxPool(2) -> Conv(1x1) ->
/// Flatten -> [n, 3 * 3 * 3 = 27], with the nodes given out of order.
fn small_cnn() -> GraphModel {
    let pads = Attr::Ints(vec![1, 1, 1, 1]);
    let g = GraphBuilder::new()
        .input("x")
        .initializer("w1", Value::F32(random_input(&[4, 2, 3, 3], 1, -0.5, 0.5)))
        .initializer("b1", Value::F32(random_input(&[4], 2, -0.5, 0.5)))
        .initializer("gamma", Value::F32(random_input(&[4], 3, 0.5, 1.5)))
        .initializer("beta", Value::F32(random_input(&[4], 4, -0.5, 0.5)))
        .initializer("mean", Value::F32(random_input(&[4], 5, -0.2, 0.2)))
        .initializer("var", Value::F32(random_input(&[4], 6, 0.5, 1.5)))
        .initializer("w2", Value::F32(random_input(&[3, 4, 1, 1], 7, -0.5, 0.5)))
        .node(node(
            "Flatten",
            &["c2"],
            "y",
            Attrs::new().with("axis", Attr::Int(1)),
        ))
        .node(node(
            "Conv",
            &["x", "w1", "b1"],
            "c1",
            Attrs::new().with("pads", pads),
        ))
        .node(node(
            "BatchNormalization",
            &["c1", "gamma", "beta", "mean", "var"],
            "bn",
            Attrs::new(),
        ))
        .node(node("Relu", &["bn"], "r", Attrs::new()))
        .node(node(
            "MaxPool",
            &["r"],
            "p",
            Attrs::new()
                .with("kernel_shape", Attr::Ints(vec![2, 2]))
                .with("strides", Attr::Ints(vec![2, 2])),
        ))
        .node(node("Conv", &["p", "w2", ""], "c2", Attrs::new()))
        // A node nothing reads: pruned.
        .node(node("Relu", &["p"], "unused", Attrs::new()))
        .output("y")
        .build()
        .unwrap();
    assert_eq!(g.n_nodes(), 6, "{:?}", g.op_counts());
    GraphModel::new(g, vec![2, 6, 6], None).unwrap()
}

#[test]
fn parameters_are_weights_not_buffers() {
    let m = small_cnn();
    let names: Vec<String> = m.parameter_groups().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["w1", "b1", "gamma", "beta", "w2"]);
    assert_eq!(m.n_outputs(), 27);
}

#[test]
fn predictions_do_not_depend_on_the_batch() {
    let m = small_cnn();
    let x = random_input(&[19, 2, 6, 6], 8, -1.0, 1.0);
    let all = m.predict(x.view()).unwrap();
    assert_eq!(all.dim(), (19, 27));
    for i in [0, 7, 18] {
        let one = m
            .predict(x.slice_axis(ndarray::Axis(0), (i..i + 1).into()))
            .unwrap();
        assert_eq!(one.row(0), all.row(i), "sample {i}");
    }
    let err = m
        .predict(random_input(&[1, 3, 6, 6], 1, 0.0, 1.0).view())
        .unwrap_err();
    assert!(err.to_string().contains("expected [n, 2, 6, 6]"), "{err}");
}

#[test]
fn input_gradient_matches_finite_differences() {
    let m = small_cnn();
    let x = random_input(&[3, 2, 6, 6], 9, -1.0, 1.0);
    let w = random_input(&[3, 27], 10, -1.0, 1.0)
        .into_dimensionality()
        .unwrap();
    let g = m.input_gradient(x.view(), w.view()).unwrap();
    let loss = |x: &ArrayD<f32>| -> f64 {
        let y = m.predict(x.view()).unwrap();
        y.iter()
            .zip(w.iter())
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    for k in [0usize, 5, 40, 77, 100, 150, 215] {
        let mut p = x.clone();
        let mut q = x.clone();
        p.as_slice_mut().unwrap()[k] += 1e-3;
        q.as_slice_mut().unwrap()[k] -= 1e-3;
        let fd = ((loss(&p) - loss(&q)) / 2e-3) as f32;
        let a = g.as_slice().unwrap()[k];
        assert!(
            (a - fd).abs() < 2e-2 * a.abs().max(1.0),
            "x[{k}]: {a} vs {fd}"
        );
    }
    // The pullback gives the same outputs and gradient in one pass.
    let (y, g2) = m
        .predict_and_input_gradient(x.view(), &mut |_| Ok(w.clone()))
        .unwrap();
    assert_eq!(y, m.predict(x.view()).unwrap());
    assert_eq!(g2, g);
}

#[test]
fn per_sample_gradients_sum_to_the_batch_gradient() {
    let m = small_cnn();
    let x = random_input(&[5, 2, 6, 6], 11, -1.0, 1.0);
    let targets = Targets::Classes(vec![0, 3, 26, 4, 4]);
    let loss = Loss::CrossEntropy(OutputKind::Logits);
    let per = m
        .per_sample_grads(x.view(), &targets, &loss, &ParamSelection::All)
        .unwrap();
    let flat = per.to_flat();
    assert_eq!(
        flat.dim(),
        (5, m.parameter_groups().iter().map(|g| g.len()).sum())
    );
    // Sample 3 alone gives its row.
    let one = m
        .per_sample_grads(
            x.slice_axis(ndarray::Axis(0), (3..4).into()),
            &targets.select(&[3]).unwrap(),
            &loss,
            &ParamSelection::All,
        )
        .unwrap()
        .to_flat();
    assert_eq!(one.row(0), flat.row(3));
    // The sum over samples is the gradient of the summed loss from one batch pass.
    let out = m.predict(x.view()).unwrap();
    let (_, gy) = loss.value_and_grad(out.view(), &targets).unwrap();
    let graph = m.graph();
    let tape = graph.forward(vec![Value::F32(x.clone())], true).unwrap();
    let grads = graph
        .backward(
            &tape,
            vec![Some(gy.into_dyn())],
            &Wanted {
                inputs: vec![],
                params: (0..graph.params().len()).collect(),
            },
        )
        .unwrap();
    let batch: Vec<f32> = grads
        .params
        .into_iter()
        .flat_map(|g| g.unwrap().into_raw_vec_and_offset().0)
        .collect();
    let summed = flat.sum_axis(ndarray::Axis(0));
    for (a, b) in summed.iter().zip(&batch) {
        assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
    }
    // A selection returns only the named groups.
    let sel = m
        .per_sample_grads(
            x.view(),
            &targets,
            &loss,
            &ParamSelection::Groups(vec!["w2".into()]),
        )
        .unwrap();
    assert_eq!(sel.n_params(), 12);
    assert!(m
        .per_sample_grads(
            x.view(),
            &targets,
            &loss,
            &ParamSelection::Groups(vec!["nope".into()])
        )
        .is_err());
}

#[test]
fn build_errors_name_the_node_and_what_was_expected() {
    let unknown = GraphBuilder::new()
        .input("x")
        .node(node("NonMaxSuppression", &["x"], "y", Attrs::new()))
        .output("y")
        .build()
        .unwrap_err();
    assert!(
        matches!(&unknown, GraphError::UnknownOp { op_type, node, .. } if op_type == "NonMaxSuppression" && node == "NonMaxSuppression_y")
    );
    let undefined = GraphBuilder::new()
        .input("x")
        .node(node("Relu", &["nothing"], "y", Attrs::new()))
        .output("y")
        .build()
        .unwrap_err();
    assert!(undefined.to_string().contains("`nothing`"), "{undefined}");
    let cycle = GraphBuilder::new()
        .input("x")
        .node(node("Relu", &["b"], "a", Attrs::new()))
        .node(node("Relu", &["a"], "b", Attrs::new()))
        .output("b")
        .build()
        .unwrap_err();
    assert!(cycle.to_string().contains("cycle"), "{cycle}");
    let bad_attr = GraphBuilder::new()
        .input("x")
        .node(node("MaxPool", &["x"], "y", Attrs::new()))
        .output("y")
        .build()
        .unwrap_err();
    assert!(bad_attr.to_string().contains("kernel_shape"), "{bad_attr}");
    // A run-time error names the node too.
    let g = GraphBuilder::new()
        .input("x")
        .node(node(
            "MaxPool",
            &["x"],
            "y",
            Attrs::new().with("kernel_shape", Attr::Ints(vec![5, 5])),
        ))
        .output("y")
        .build()
        .unwrap();
    let e = g
        .run(vec![Value::F32(ArrayD::zeros(IxDyn(&[1, 1, 2, 2])))])
        .unwrap_err();
    assert!(e.to_string().contains("MaxPool_y"), "{e}");
}

#[test]
fn constant_subgraphs_are_folded() {
    // Flatten of a constant and a Reshape whose shape is a constant: nothing left but the
    // Reshape of the data input.
    let g = GraphBuilder::new()
        .input("x")
        .constant("s", Value::I64(ndarray::arr1(&[2i64, -1]).into_dyn()))
        .initializer("c", Value::F32(Array2::<f32>::ones((2, 3)).into_dyn()))
        .node(node("Flatten", &["c"], "cf", Attrs::new()))
        .node(node("Identity", &["s"], "shape", Attrs::new()))
        .node(node("Reshape", &["x", "shape"], "y", Attrs::new()))
        .output("y")
        .output("cf")
        .build()
        .unwrap();
    assert_eq!(g.n_nodes(), 1);
    let out = g
        .run(vec![Value::F32(ArrayD::zeros(IxDyn(&[4, 3])))])
        .unwrap();
    assert_eq!(out[0].shape(), &[2, 6]);
    assert_eq!(out[1].shape(), &[2, 3]);
}
