//! Elementwise functions of one tensor: `Identity`, `Dropout` (inference), activations
//! (`Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `Gelu`, `HardSwish`, `HardSigmoid`, `Elu`,
//! `Selu`, `Softplus`, `Clip`), and `Erf`, `Sqrt`, `Exp`, `Log`, `Neg`, `Reciprocal`, `Abs`,
//! `Sin`, `Cos`, and the piecewise-constant `Floor`, `Ceil`, `Round`, `Sign` (zero gradient).
//!
//! Each function is its value `f(x)` and its derivative `f'(x)` given `x` and `y = f(x)`; the
//! backward pass is `dx = dy · f'(x, y)`.

use ndarray::{ArrayD, Zip};
use rayon::prelude::*;

use crate::error::{OpError, OpResult};
use crate::op::{first_grad, optional, required, Attrs, Builder, NodeSpec, Operator};
use crate::value::Value;

/// The table of this family.
pub const OPS: &[(&str, Builder)] = &[
    ("Identity", build),
    ("Dropout", build),
    ("Relu", build),
    ("LeakyRelu", build),
    ("Sigmoid", build),
    ("Tanh", build),
    ("Gelu", build),
    ("HardSwish", build),
    ("HardSigmoid", build),
    ("Elu", build),
    ("Selu", build),
    ("Softplus", build),
    ("Clip", build),
    ("Erf", build),
    ("Sqrt", build),
    ("Exp", build),
    ("Log", build),
    ("Neg", build),
    ("Reciprocal", build),
    ("Abs", build),
    ("Sin", build),
    ("Cos", build),
    ("Floor", build),
    ("Ceil", build),
    ("Round", build),
    ("Sign", build),
];

/// Which function.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Identity,
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    Tanh,
    Gelu {
        tanh: bool,
    },
    HardSwish,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Elu(f32),
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Softplus,
    /// Bounds from attributes (opset < 11); inputs 1 and 2 otherwise.
    Clip {
        min: f32,
        max: f32,
    },
    Erf,
    Sqrt,
    Exp,
    Log,
    Neg,
    Reciprocal,
    Abs,
    Sin,
    Cos,
    /// Floor, Ceil, Round, Sign: derivative zero almost everywhere.
    Step(Step),
}

/// The piecewise-constant functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Floor,
    Ceil,
    /// Half to even, as ONNX's `Round`.
    Round,
    Sign,
}

impl Step {
    fn apply(self, x: f32) -> f32 {
        match self {
            Step::Floor => x.floor(),
            Step::Ceil => x.ceil(),
            Step::Round => round_half_even(x),
            Step::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// An elementwise operator.
#[derive(Debug)]
struct Unary {
    kind: Kind,
    /// `Clip` with bounds as inputs (opset 11+).
    clip_inputs: bool,
    /// `Dropout` declares a mask output too.
    mask_output: bool,
    /// `Dropout` (whose `training_mode` input, when true, asks for random masks).
    dropout: bool,
}

fn round_half_even(x: f32) -> f32 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

fn build(spec: &NodeSpec) -> OpResult<Box<dyn Operator>> {
    let a: &Attrs = &spec.attrs;
    let finite = |v: f32, what: &str| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(OpError(format!(
                "attribute `{what}` is {v}, expected a finite number"
            )))
        }
    };
    let kind = match spec.op_type.as_str() {
        "Identity" | "Dropout" => Kind::Identity,
        "Relu" => Kind::Relu,
        "LeakyRelu" => Kind::LeakyRelu(finite(a.float_or("alpha", 0.01)?, "alpha")?),
        "Sigmoid" => Kind::Sigmoid,
        "Tanh" => Kind::Tanh,
        "Gelu" => match a.string_or("approximate", "none")?.as_str() {
            "none" => Kind::Gelu { tanh: false },
            "tanh" => Kind::Gelu { tanh: true },
            other => {
                return Err(OpError(format!(
                    "attribute `approximate` is `{other}`, expected `none` or `tanh`"
                )))
            }
        },
        "HardSwish" => Kind::HardSwish,
        "HardSigmoid" => Kind::HardSigmoid {
            alpha: finite(a.float_or("alpha", 0.2)?, "alpha")?,
            beta: finite(a.float_or("beta", 0.5)?, "beta")?,
        },
        "Elu" => Kind::Elu(finite(a.float_or("alpha", 1.0)?, "alpha")?),
        "Selu" => Kind::Selu {
            alpha: finite(a.float_or("alpha", 1.673_263_2)?, "alpha")?,
            gamma: finite(a.float_or("gamma", 1.050_701)?, "gamma")?,
        },
        "Softplus" => Kind::Softplus,
        "Clip" => Kind::Clip {
            min: a.float_or("min", f32::NEG_INFINITY)?,
            max: a.float_or("max", f32::INFINITY)?,
        },
        "Erf" => Kind::Erf,
        "Sqrt" => Kind::Sqrt,
        "Exp" => Kind::Exp,
        "Log" => Kind::Log,
        "Neg" => Kind::Neg,
        "Reciprocal" => Kind::Reciprocal,
        "Abs" => Kind::Abs,
        "Sin" => Kind::Sin,
        "Cos" => Kind::Cos,
        "Floor" => Kind::Step(Step::Floor),
        "Ceil" => Kind::Step(Step::Ceil),
        "Round" => Kind::Step(Step::Round),
        "Sign" => Kind::Step(Step::Sign),
        other => return Err(OpError(format!("`{other}` is not an elementwise function"))),
    };
    Ok(Box::new(Unary {
        kind,
        clip_inputs: spec.op_type == "Clip" && spec.opset >= 11,
        mask_output: spec.op_type == "Dropout" && spec.n_outputs > 1,
        dropout: spec.op_type == "Dropout",
    }))
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

impl Kind {
    #[inline]
    fn value(self, x: f32) -> f32 {
        match self {
            Kind::Identity => x,
            Kind::Relu => x.max(0.0),
            Kind::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Kind::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Kind::Tanh => x.tanh(),
            Kind::Gelu { tanh: false } => {
                0.5 * x * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2) as f32)
            }
            Kind::Gelu { tanh: true } => {
                0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
            }
            Kind::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Kind::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
            Kind::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Kind::Selu { alpha, gamma } => {
                if x > 0.0 {
                    gamma * x
                } else {
                    gamma * alpha * x.exp_m1()
                }
            }
            Kind::Softplus => {
                if x > 20.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            Kind::Clip { min, max } => x.max(min).min(max),
            Kind::Erf => libm::erf(x as f64) as f32,
            Kind::Sqrt => x.sqrt(),
            Kind::Exp => x.exp(),
            Kind::Log => x.ln(),
            Kind::Neg => -x,
            Kind::Reciprocal => 1.0 / x,
            Kind::Abs => x.abs(),
            Kind::Sin => x.sin(),
            Kind::Cos => x.cos(),
            Kind::Step(s) => s.apply(x),
        }
    }

    /// `f'(x)` given `x` and `y = f(x)`.
    #[inline]
    fn derivative(self, x: f32, y: f32) -> f32 {
        match self {
            Kind::Identity => 1.0,
            Kind::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Kind::LeakyRelu(a) => {
                if x >= 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Kind::Sigmoid => y * (1.0 - y),
            Kind::Tanh => 1.0 - y * y,
            Kind::Gelu { tanh: false } => {
                let xf = x as f64;
                let cdf = 0.5 * (1.0 + libm::erf(xf / std::f64::consts::SQRT_2));
                let pdf = (-0.5 * xf * xf).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (cdf + xf * pdf) as f32
            }
            Kind::Gelu { tanh: true } => {
                let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
                let t = u.tanh();
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
            }
            Kind::HardSwish => {
                if x < -3.0 {
                    0.0
                } else if x > 3.0 {
                    1.0
                } else {
                    (2.0 * x + 3.0) / 6.0
                }
            }
            Kind::HardSigmoid { alpha, beta } => {
                let v = alpha * x + beta;
                if v > 0.0 && v < 1.0 {
                    alpha
                } else {
                    0.0
                }
            }
            Kind::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    y + a
                }
            }
            Kind::Selu { alpha, gamma } => {
                if x > 0.0 {
                    gamma
                } else {
                    y + gamma * alpha
                }
            }
            Kind::Softplus => 1.0 / (1.0 + (-x).exp()),
            Kind::Clip { min, max } => {
                if x >= min && x <= max {
                    1.0
                } else {
                    0.0
                }
            }
            Kind::Erf => {
                (2.0 / std::f64::consts::PI.sqrt() * (-(x as f64) * x as f64).exp()) as f32
            }
            Kind::Sqrt => 0.5 / y,
            Kind::Exp => y,
            Kind::Log => 1.0 / x,
            Kind::Neg => -1.0,
            Kind::Reciprocal => -y * y,
            Kind::Abs => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            Kind::Sin => x.cos(),
            Kind::Cos => -x.sin(),
            Kind::Step(_) => 0.0,
        }
    }
}

/// Elements above which elementwise maps run on rayon's threads.
const PARALLEL_ABOVE: usize = 1 << 15;

/// `f` applied to every element of `x`, on several threads for large tensors.
pub(crate) fn map_f32(x: &ArrayD<f32>, f: impl Fn(f32) -> f32 + Sync) -> ArrayD<f32> {
    let mut out = x.as_standard_layout().into_owned();
    if let Some(s) = out.as_slice_mut() {
        if s.len() > PARALLEL_ABOVE {
            s.par_chunks_mut(PARALLEL_ABOVE / 4)
                .for_each(|c| c.iter_mut().for_each(|v| *v = f(*v)));
        } else {
            s.iter_mut().for_each(|v| *v = f(*v));
        }
    }
    out
}

impl Unary {
    fn kind_with_bounds(&self, inputs: &[Option<&Value>]) -> OpResult<Kind> {
        if !self.clip_inputs {
            return Ok(self.kind);
        }
        let bound = |i: usize, default: f32| -> OpResult<f32> {
            match optional(inputs, i) {
                None => Ok(default),
                Some(v) => {
                    let vals = v.to_f32_vec();
                    match vals.as_slice() {
                        [b] if !b.is_nan() => Ok(*b),
                        _ => Err(OpError(format!(
                            "Clip's bound (input {i}) has shape {:?} and values {vals:?}, expected one number",
                            v.shape()
                        ))),
                    }
                }
            }
        };
        Ok(Kind::Clip {
            min: bound(1, f32::NEG_INFINITY)?,
            max: bound(2, f32::INFINITY)?,
        })
    }
}

impl Operator for Unary {
    fn forward(&self, inputs: &[Option<&Value>]) -> OpResult<Vec<Value>> {
        let x = required(inputs, 0, "X")?;
        if self.dropout {
            // Opset 12+: `training_mode` (input 2) true means random masks; explanations
            // evaluate the model as it predicts, so that is refused rather than ignored.
            let training = optional(inputs, 2)
                .map(|v| v.to_f32_vec().iter().any(|&t| t != 0.0))
                .unwrap_or(false);
            let ratio = optional(inputs, 1)
                .map(|v| v.to_f32_vec().first().copied().unwrap_or(0.5))
                .unwrap_or(0.5);
            if training && ratio > 0.0 {
                return Err(OpError(
                    "Dropout with training_mode = true draws random masks; export the model in \
                     evaluation mode (model.eval()) so that it predicts deterministically"
                        .into(),
                ));
            }
        }
        let kind = self.kind_with_bounds(inputs)?;
        let y = match (kind, x) {
            (Kind::Identity, v) => v.clone(),
            (Kind::Neg, Value::I64(a)) => Value::I64(a.mapv(|v| v.wrapping_neg())),
            (Kind::Abs, Value::I64(a)) => Value::I64(a.mapv(|v| v.wrapping_abs())),
            (_, Value::F32(a)) => Value::F32(map_f32(a, |v| kind.value(v))),
            (k, Value::I64(_)) => {
                return Err(OpError(format!(
                    "{k:?} of an integer tensor is not supported, expected a float tensor"
                )))
            }
        };
        let mut out = vec![y];
        if self.mask_output {
            out.push(Value::I64(ArrayD::ones(x.shape())));
        }
        Ok(out)
    }

    fn backward(
        &self,
        inputs: &[Option<&Value>],
        outputs: &[&Value],
        output_grads: &[Option<&ArrayD<f32>>],
    ) -> OpResult<Vec<Option<ArrayD<f32>>>> {
        let mut grads = vec![None; inputs.len()];
        let (Some(g), Some(Value::F32(x)), Some(Value::F32(y))) = (
            first_grad(output_grads),
            inputs.first().copied().flatten(),
            outputs.first().copied(),
        ) else {
            return Ok(grads);
        };
        let kind = self.kind_with_bounds(inputs)?;
        let dx = if kind == Kind::Identity {
            g.clone()
        } else {
            let mut dx = g.as_standard_layout().into_owned();
            Zip::from(&mut dx)
                .and(x)
                .and(y)
                .for_each(|d, &xv, &yv| *d *= kind.derivative(xv, yv));
            dx
        };
        grads[0] = Some(dx);
        Ok(grads)
    }

    fn is_parameter_input(&self, index: usize) -> bool {
        // Clip's bounds and Dropout's ratio are settings.
        index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, random_input};

    #[test]
    fn values_match_definitions() {
        let x = ndarray::arr1(&[-4.0f32, -1.0, -0.25, 0.0, 0.5, 2.0, 5.0]).into_dyn();
        let run = |op: &str, attrs: Attrs| {
            let spec = NodeSpec::new(op, attrs, 1);
            let op = build(&spec).unwrap();
            match op
                .forward(&[Some(&Value::F32(x.clone()))])
                .unwrap()
                .remove(0)
            {
                Value::F32(a) => a.into_raw_vec_and_offset().0,
                _ => unreachable!(),
            }
        };
        assert_eq!(
            run("Relu", Attrs::new()),
            vec![0.0, 0.0, 0.0, 0.0, 0.5, 2.0, 5.0]
        );
        let hs = run("HardSwish", Attrs::new());
        assert_eq!(hs[0], 0.0);
        assert!((hs[4] - 0.5 * (0.5 / 6.0 + 0.5)).abs() < 1e-7);
        let gelu = run("Gelu", Attrs::new());
        // GELU(2) = 2 Φ(2) = 1.9544997.
        assert!((gelu[5] - 1.954_499_7).abs() < 1e-6, "{gelu:?}");
        let erf = run("Erf", Attrs::new());
        assert!((erf[4] - 0.520_499_9).abs() < 1e-6);
        let round = run("Round", Attrs::new());
        assert_eq!(round[2], -0.0);
        assert_eq!(round[4], 0.0); // half to even
    }

    #[test]
    fn gradients_match_finite_differences() {
        for op in [
            "Relu",
            "Sigmoid",
            "Tanh",
            "Gelu",
            "HardSwish",
            "HardSigmoid",
            "Elu",
            "Selu",
            "Softplus",
            "Erf",
            "Exp",
            "Neg",
            "Sin",
            "Cos",
            "Abs",
            "Identity",
        ] {
            let x = random_input(&[2, 3, 4], 7, -2.0, 2.0);
            check_gradients(op, Attrs::new(), vec![Value::F32(x)], &[0], 2e-2);
        }
        let pos = random_input(&[3, 5], 3, 0.5, 2.0);
        for op in ["Sqrt", "Log", "Reciprocal"] {
            check_gradients(op, Attrs::new(), vec![Value::F32(pos.clone())], &[0], 2e-2);
        }
        check_gradients(
            "LeakyRelu",
            Attrs::new().with("alpha", crate::op::Attr::Float(0.1)),
            vec![Value::F32(random_input(&[4, 4], 1, -1.0, 1.0))],
            &[0],
            2e-2,
        );
        check_gradients(
            "Gelu",
            Attrs::new().with("approximate", crate::op::Attr::String("tanh".into())),
            vec![Value::F32(random_input(&[4, 4], 2, -3.0, 3.0))],
            &[0],
            2e-2,
        );
    }

    #[test]
    fn clip_reads_bounds_from_inputs_and_attributes() {
        let x = Value::F32(ndarray::arr1(&[-2.0f32, 0.5, 9.0]).into_dyn());
        let new = build(&NodeSpec::new("Clip", Attrs::new(), 3)).unwrap();
        let lo = Value::F32(ndarray::arr0(0.0f32).into_dyn());
        let hi = Value::F32(ndarray::arr0(6.0f32).into_dyn());
        let y = new.forward(&[Some(&x), Some(&lo), Some(&hi)]).unwrap();
        assert_eq!(y[0].to_f32_vec(), vec![0.0, 0.5, 6.0]);
        let mut old = NodeSpec::new(
            "Clip",
            Attrs::new()
                .with("min", crate::op::Attr::Float(-1.0))
                .with("max", crate::op::Attr::Float(1.0)),
            1,
        );
        old.opset = 6;
        let y = build(&old).unwrap().forward(&[Some(&x)]).unwrap();
        assert_eq!(y[0].to_f32_vec(), vec![-1.0, 0.5, 1.0]);
        let bad = Value::F32(ndarray::arr1(&[0.0f32, 1.0]).into_dyn());
        assert!(new.forward(&[Some(&x), Some(&bad), None]).is_err());
    }
}
