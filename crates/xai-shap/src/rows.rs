//! Many instances per call: KernelSHAP over the games of several rows with the model evaluated
//! in batches that mix rows.
//!
//! A [`GameRows`] is a family of coalition games, one per explained row (e.g.
//! [`crate::BackgroundGames`]: one table row or image each, against a background data set).
//! [`ValidKernelShapParams::estimate_rows`] evaluates the two references of every row first (in
//! batches of `batch_size` coalitions), then streams the sampled coalitions of row after row
//! into batches of `batch_size`, so one model call may serve the tail of one row and the head of
//! the next. Each row draws its coalitions from its own generator seeded with the parameters'
//! seed, exactly as a call for that row alone would, and adds them to its normal equations in
//! chunks of `batch_size` counted from its first coalition; the values are therefore identical,
//! bit for bit, to one call per row with the same seed, whenever the model's output for a sample
//! does not depend on the other samples of its batch.

use std::collections::VecDeque;

use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use xai_core::CoreError;

use crate::algorithm::ShapValues;
use crate::error::{Result, ShapError};
use crate::game::CoalitionGame;
use crate::hyperparams::{Link, ValidKernelShapParams};
use crate::sampling::{design, effective_nsamples, CoalitionDesign};
use crate::solver::{FeatureSelection, NormalEquations};

/// One coalition of one row's game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoalitionRequest {
    /// The row (explained instance).
    pub row: usize,
    /// `true` = player present; one entry per player of that row.
    pub mask: Vec<bool>,
}

/// The coalition games of several rows, evaluated together (see the module docs).
pub trait GameRows: Sync {
    /// Number of rows (games).
    fn n_rows(&self) -> usize;

    /// Number of players of row `row`'s game.
    fn n_players(&self, row: usize) -> usize;

    /// Number of outputs (the same for every row).
    fn n_outputs(&self) -> usize;

    /// `v_row(S)` for each request, `[requests.len(), n_outputs]`, in the order given.
    fn evaluate(&self, requests: &[CoalitionRequest]) -> Result<Array2<f64>>;

    /// Players of row `row` known never to change its game (see
    /// [`CoalitionGame::inert_players`]). The default knows none.
    fn inert_players(&self, _row: usize) -> Vec<usize> {
        Vec::new()
    }
}

/// One [`CoalitionGame`] as a single row.
pub struct OneGame<'a>(pub &'a dyn CoalitionGame);

impl GameRows for OneGame<'_> {
    fn n_rows(&self) -> usize {
        1
    }
    fn n_players(&self, _row: usize) -> usize {
        self.0.n_players()
    }
    fn n_outputs(&self) -> usize {
        self.0.n_outputs()
    }
    fn evaluate(&self, requests: &[CoalitionRequest]) -> Result<Array2<f64>> {
        games_evaluate(&[self.0], requests)
    }
    fn inert_players(&self, _row: usize) -> Vec<usize> {
        self.0.inert_players()
    }
}

/// Independent [`CoalitionGame`]s as rows (one game call per row within a batch; the games must
/// have the same number of outputs).
pub struct GameList<'a>(pub Vec<&'a dyn CoalitionGame>);

impl GameRows for GameList<'_> {
    fn n_rows(&self) -> usize {
        self.0.len()
    }
    fn n_players(&self, row: usize) -> usize {
        self.0[row].n_players()
    }
    fn n_outputs(&self) -> usize {
        self.0.first().map_or(0, |g| g.n_outputs())
    }
    fn evaluate(&self, requests: &[CoalitionRequest]) -> Result<Array2<f64>> {
        games_evaluate(&self.0, requests)
    }
    fn inert_players(&self, row: usize) -> Vec<usize> {
        self.0[row].inert_players()
    }
}

/// Evaluates requests on separate games, one call per run of consecutive requests of a row.
fn games_evaluate(
    games: &[&dyn CoalitionGame],
    requests: &[CoalitionRequest],
) -> Result<Array2<f64>> {
    let n_outputs = games.first().map_or(0, |g| g.n_outputs());
    let mut out = Array2::zeros((requests.len(), n_outputs));
    let mut start = 0;
    while start < requests.len() {
        let row = requests[start].row;
        let Some(game) = games.get(row) else {
            return Err(ShapError::param(
                "coalition row",
                row,
                format!("a row below {}", games.len()),
            ));
        };
        let end = start
            + requests[start..]
                .iter()
                .take_while(|r| r.row == row)
                .count();
        let m = game.n_players();
        let mut masks = Array2::from_elem((end - start, m), false);
        for (i, req) in requests[start..end].iter().enumerate() {
            if req.mask.len() != m {
                return Err(ShapError::shape(
                    "coalition",
                    &[req.mask.len()],
                    format!("[{m}], one entry per player"),
                ));
            }
            for (j, &p) in req.mask.iter().enumerate() {
                masks[[i, j]] = p;
            }
        }
        let values = game.evaluate(masks.view())?;
        if values.shape() != [end - start, n_outputs] {
            return Err(ShapError::BatchShape {
                what: "coalition function".into(),
                got: values.shape().to_vec(),
                expected: format!("[{}, {n_outputs}]", end - start),
            });
        }
        out.slice_mut(ndarray::s![start..end, ..]).assign(&values);
        start = end;
    }
    Ok(out)
}

/// Where a call of [`ValidKernelShapParams::estimate_rows_with_progress`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Rows whose values are final.
    pub rows_done: usize,
    /// Rows in the call.
    pub n_rows: usize,
    /// Coalitions evaluated so far (references included), over all rows.
    pub coalitions_evaluated: usize,
    /// Game (model) calls so far.
    pub calls: usize,
}

/// What is known about a row before its coalitions are sampled.
struct RowPlan {
    active: Vec<usize>,
    inert: Vec<usize>,
    base_values: Vec<f64>,
    instance_values: Vec<f64>,
}

/// A row whose coalitions are being evaluated.
struct OpenRow {
    row: usize,
    design: CoalitionDesign,
    equations: NormalEquations,
    /// Next coalition to request.
    next: usize,
    /// Coalitions received (and buffered or added).
    received: usize,
    buf_z: Vec<f64>,
    buf_w: Vec<f64>,
    buf_y: Vec<f64>,
}

fn apply_link(link: Link, value: f64, label: usize, coalition: usize) -> Result<f64> {
    link.apply(value).ok_or(ShapError::LogitDomain {
        label,
        coalition,
        value,
    })
}

/// Evaluates `requests`, checking the output shape and finiteness; `numbers[i]` numbers request
/// `i` within its row for error messages.
fn evaluate_checked(
    games: &dyn GameRows,
    requests: &[CoalitionRequest],
    numbers: &[usize],
) -> Result<Array2<f64>> {
    let out = games.evaluate(requests)?;
    let expected = [requests.len(), games.n_outputs()];
    if out.shape() != expected {
        return Err(ShapError::BatchShape {
            what: "coalition function".into(),
            got: out.shape().to_vec(),
            expected: format!("{expected:?}"),
        });
    }
    if let Some(((i, label), &value)) = out.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(in_row(
            games,
            requests[i].row,
            ShapError::NonFiniteOutput {
                label,
                coalition: numbers[i],
                value,
            },
        ));
    }
    Ok(out)
}

/// Adds the row to an error when there are several rows.
fn in_row(games: &dyn GameRows, row: usize, error: ShapError) -> ShapError {
    in_row_n(games.n_rows(), row, error)
}

fn in_row_n(n_rows: usize, row: usize, error: ShapError) -> ShapError {
    if n_rows > 1 {
        ShapError::Row {
            row,
            source: Box::new(error),
        }
    } else {
        error
    }
}

impl ValidKernelShapParams {
    /// The labels to explain for `n_outputs` outputs, checked.
    pub(crate) fn resolve_labels(&self, n_outputs: usize) -> Result<Vec<usize>> {
        if n_outputs == 0 {
            return Err(CoreError::Empty("the model's outputs".into()).into());
        }
        let labels = match self.labels() {
            Some(l) => l.to_vec(),
            None => (0..n_outputs).collect(),
        };
        if let Some(&label) = labels.iter().find(|&&l| l >= n_outputs) {
            return Err(ShapError::LabelOutOfRange { label, n_outputs });
        }
        Ok(labels)
    }

    /// KernelSHAP values of every row of `games` (see the module docs).
    pub fn estimate_rows(&self, games: &dyn GameRows) -> Result<Vec<ShapValues>> {
        self.estimate_rows_with_progress(games, &mut |_| {})
    }

    /// [`ValidKernelShapParams::estimate_rows`], calling `progress` after the references and
    /// after each row is finished.
    pub fn estimate_rows_with_progress(
        &self,
        games: &dyn GameRows,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<ShapValues>> {
        let labels = self.resolve_labels(games.n_outputs())?;
        let n_rows = games.n_rows();
        let d = labels.len();
        let link = self.link();
        let batch = self.batch_size();
        let mut state = Progress {
            rows_done: 0,
            n_rows,
            coalitions_evaluated: 0,
            calls: 0,
        };

        // players and references of every row
        let mut plans = Vec::with_capacity(n_rows);
        let mut references = Vec::with_capacity(2 * n_rows);
        for row in 0..n_rows {
            let m_total = games.n_players(row);
            let mut inert = vec![false; m_total];
            if self.skip_inert_features() {
                for j in games.inert_players(row) {
                    if j >= m_total {
                        return Err(in_row(
                            games,
                            row,
                            ShapError::param(
                                "inert player",
                                j,
                                format!("an index below the number of players {m_total}"),
                            ),
                        ));
                    }
                    inert[j] = true;
                }
            }
            plans.push(RowPlan {
                active: (0..m_total).filter(|&j| !inert[j]).collect(),
                inert: (0..m_total).filter(|&j| inert[j]).collect(),
                base_values: Vec::with_capacity(d),
                instance_values: Vec::with_capacity(d),
            });
            references.push(CoalitionRequest {
                row,
                mask: vec![false; m_total],
            });
            references.push(CoalitionRequest {
                row,
                mask: vec![true; m_total],
            });
        }
        for (c, chunk) in references.chunks(batch).enumerate() {
            let numbers: Vec<usize> = (0..chunk.len()).map(|i| (c * batch + i) % 2).collect();
            let out = evaluate_checked(games, chunk, &numbers)?;
            state.calls += 1;
            state.coalitions_evaluated += chunk.len();
            for (i, req) in chunk.iter().enumerate() {
                let plan = &mut plans[req.row];
                for &l in &labels {
                    let v = apply_link(link, out[[i, l]], l, numbers[i])
                        .map_err(|e| in_row(games, req.row, e))?;
                    if numbers[i] == 0 {
                        plan.base_values.push(v);
                    } else {
                        plan.instance_values.push(v);
                    }
                }
            }
        }
        progress(&state);

        let mut results: Vec<Option<ShapValues>> = (0..n_rows).map(|_| None).collect();
        let mut open: VecDeque<OpenRow> = VecDeque::new();
        let mut next_row = 0;
        loop {
            // fill a batch from the open rows, opening rows as needed
            let mut requests = Vec::with_capacity(batch);
            let mut owners = Vec::with_capacity(batch);
            let mut open_pos = 0;
            while requests.len() < batch {
                if open_pos == open.len() {
                    // open the next row that needs sampling; finish trivial rows at once
                    let Some(row) = (next_row < n_rows).then_some(next_row) else {
                        break;
                    };
                    next_row += 1;
                    match self.open_row(row, &plans[row], d)? {
                        Some(o) => open.push_back(o),
                        None => {
                            results[row] =
                                Some(trivial_values(&labels, &plans[row], games.n_players(row)));
                            state.rows_done += 1;
                            progress(&state);
                        }
                    }
                    continue;
                }
                let o = &mut open[open_pos];
                if o.next == o.design.len() {
                    open_pos += 1;
                    continue;
                }
                let plan = &plans[o.row];
                let mut mask = vec![true; games.n_players(o.row)];
                for (a, &j) in plan.active.iter().enumerate() {
                    mask[j] = o.design.contains(o.next, a);
                }
                requests.push(CoalitionRequest { row: o.row, mask });
                owners.push((open_pos, o.next));
                o.next += 1;
            }
            if requests.is_empty() {
                break;
            }
            let numbers: Vec<usize> = owners.iter().map(|&(_, c)| 2 + c).collect();
            let out = evaluate_checked(games, &requests, &numbers)?;
            state.calls += 1;
            state.coalitions_evaluated += requests.len();
            for (i, &(pos, c)) in owners.iter().enumerate() {
                let o = &mut open[pos];
                let plan = &plans[o.row];
                let m = plan.active.len();
                for a in 0..m {
                    o.buf_z
                        .push(if o.design.contains(c, a) { 1.0 } else { 0.0 });
                }
                o.buf_w.push(o.design.weights()[c]);
                for (k, &l) in labels.iter().enumerate() {
                    let v = apply_link(link, out[[i, l]], l, 2 + c)
                        .map_err(|e| in_row(games, o.row, e))?;
                    o.buf_y.push(v - plan.base_values[k]);
                }
                o.received += 1;
                if o.buf_w.len() == batch || o.received == o.design.len() {
                    o.flush(m, d);
                }
            }
            // finish the rows at the front whose coalitions are all in
            while open.front().is_some_and(|o| o.received == o.design.len()) {
                let o = open.pop_front().expect("front exists");
                let row = o.row;
                results[row] =
                    Some(self.finish_row(o, &labels, &plans[row], games.n_players(row), n_rows)?);
                state.rows_done += 1;
                progress(&state);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every row finished"))
            .collect())
    }

    /// The sampling state of a row, or `None` when its values need no sampling (fewer than two
    /// active players).
    fn open_row(&self, row: usize, plan: &RowPlan, d: usize) -> Result<Option<OpenRow>> {
        let m = plan.active.len();
        if m < 2 {
            return Ok(None);
        }
        let nsamples = effective_nsamples(m, self.nsamples().resolve(m));
        let mut rng = StdRng::seed_from_u64(self.seed());
        let design = design(self.sampling(), m, nsamples, &mut rng)?;
        let with_selection = self.l1_reg().needs_selection_sums();
        Ok(Some(OpenRow {
            row,
            equations: NormalEquations::new(m, d, self.regression(), with_selection),
            design,
            next: 0,
            received: 0,
            buf_z: Vec::new(),
            buf_w: Vec::new(),
            buf_y: Vec::new(),
        }))
    }

    fn finish_row(
        &self,
        o: OpenRow,
        labels: &[usize],
        plan: &RowPlan,
        m_total: usize,
        n_rows: usize,
    ) -> Result<ShapValues> {
        let d = labels.len();
        let delta = deltas(plan);
        let m = plan.active.len();
        let fraction = o.design.len() as f64 / max_coalitions(m);
        let selection = self.l1_reg().resolve(fraction);
        let phi = o
            .equations
            .solve(&delta, selection)
            .map_err(|e| in_row_n(n_rows, o.row, e))?;
        let mut values = Array2::zeros((d, m_total));
        for k in 0..d {
            for (a, &j) in plan.active.iter().enumerate() {
                values[[k, j]] = phi[[k, a]];
            }
        }
        Ok(ShapValues {
            labels: labels.to_vec(),
            values,
            base_values: plan.base_values.clone(),
            instance_values: plan.instance_values.clone(),
            inert_features: plan.inert.clone(),
            n_coalitions: o.design.len(),
            n_evaluations: o.design.len() + 2,
            exact: o.design.is_exact(),
        })
    }
}

/// `2^m - 2` as shap counts it for its `"auto"` rule (`2^30` from `m > 30` on).
fn max_coalitions(m: usize) -> f64 {
    if m <= 30 {
        ((1u64 << m) - 2) as f64
    } else {
        (1u64 << 30) as f64
    }
}

fn deltas(plan: &RowPlan) -> Vec<f64> {
    plan.instance_values
        .iter()
        .zip(&plan.base_values)
        .map(|(f, b)| f - b)
        .collect()
}

/// Values of a row with fewer than two active players: all of `Δ` to the one active player.
fn trivial_values(labels: &[usize], plan: &RowPlan, m_total: usize) -> ShapValues {
    let d = labels.len();
    let delta = deltas(plan);
    let mut values = Array2::zeros((d, m_total));
    if let [j] = plan.active[..] {
        for k in 0..d {
            values[[k, j]] = delta[k];
        }
    }
    ShapValues {
        labels: labels.to_vec(),
        values,
        base_values: plan.base_values.clone(),
        instance_values: plan.instance_values.clone(),
        inert_features: plan.inert.clone(),
        n_coalitions: 0,
        n_evaluations: 2,
        exact: true,
    }
}

impl OpenRow {
    fn flush(&mut self, m: usize, d: usize) {
        let rows = self.buf_w.len();
        if rows == 0 {
            return;
        }
        let z = ArrayView2::from_shape((rows, m), &self.buf_z).expect("buffer is rows x m");
        let y = ArrayView2::from_shape((rows, d), &self.buf_y).expect("buffer is rows x d");
        self.equations.add(z, &self.buf_w, y);
        self.buf_z.clear();
        self.buf_w.clear();
        self.buf_y.clear();
    }
}

impl FeatureSelection {
    /// Whether the equations must accumulate the sums of shap's augmented selection problem for
    /// `m` active features.
    pub(crate) fn needs_selection_sums(self) -> bool {
        self != FeatureSelection::None
    }
}
