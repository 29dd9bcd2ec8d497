//! The rotation protocol, the same for every kind: create → set → test → finish → revoke, each
//! step journaled before the next, resumed after a crash, rolled back after a failed test; and
//! `rollback`, which puts the previous value back. What a step does to a target is the kind's
//! [`Rotator`]; the order, the journal and the store's slots are this file's.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::state::{load_state, save_state};
use super::{
    fingerprint, parse_duration, Context, Kind, Progress, Revoke, RotateError, Rotator, SecretSpec, SecretState, State,
    Step, StepError,
};
use crate::error::ErrorClass;
use crate::secrets::store::{Fields, Slot, Slots};

/// What happened to one secret in a run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// The steps performed in this run, in order.
    pub steps: Vec<String>,
    pub fingerprint: Option<String>,
    pub previous_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure `error` is (a target that cannot be reached: exit 3).
    #[serde(skip)]
    pub error_class: Option<ErrorClass>,
    /// password-hash without a plaintext_file: the one-time plaintext, for the terminal only.
    #[serde(skip)]
    pub plaintext: Option<String>,
}

impl Outcome {
    fn new(name: &str, ok: bool) -> Outcome {
        Outcome {
            name: name.to_string(),
            ok,
            steps: Vec::new(),
            fingerprint: None,
            previous_fingerprint: None,
            error: None,
            error_class: None,
            plaintext: None,
        }
    }

    fn fail(&mut self, e: StepError) {
        self.ok = false;
        self.error = Some(e.message);
        self.error_class = Some(e.class);
    }
}

/// Test-only crash hook: `OPSBOOK_ROTATE_CRASH_AFTER=<step>` ends the process right after that
/// step is journaled, the way a kill would. Only in builds with the `fault-injection` feature, so
/// a release binary cannot be made to stop half-way by its environment.
#[cfg(feature = "fault-injection")]
fn crash_point(step: &str) {
    if std::env::var("OPSBOOK_ROTATE_CRASH_AFTER").is_ok_and(|s| s == step) {
        std::process::exit(99);
    }
}

#[cfg(not(feature = "fault-injection"))]
fn crash_point(_step: &str) {}

/// One secret's rotation under way: its kind, its journal entry (saved into `state` after every
/// step) and the report of this run.
struct Rotation<'a> {
    ctx: &'a Context,
    spec: &'a SecretSpec,
    kind: &'static dyn Rotator,
    state: &'a mut State,
    entry: SecretState,
    out: &'a mut Outcome,
}

/// Runs (or resumes) the rotation of one secret.
async fn rotate_one(ctx: &Context, spec: &SecretSpec, state: &mut State) -> Outcome {
    let mut outcome = Outcome::new(&spec.name, false);
    match rotate_steps(ctx, spec, state, &mut outcome).await {
        Ok(()) => outcome.ok = true,
        Err(e) => outcome.fail(e),
    }
    outcome
}

async fn rotate_steps(ctx: &Context, spec: &SecretSpec, state: &mut State, out: &mut Outcome) -> Result<(), StepError> {
    let mut store = spec.slots().await?;
    let current = store.get(Slot::Current).cloned();
    out.previous_fingerprint = store.primary(Slot::Current).map(fingerprint);
    let entry = state.secrets.get(&spec.name).cloned().unwrap_or_default();
    let mut r = Rotation { ctx, spec, kind: spec.rotator(), state, entry, out };

    // A crash between writing the store and the journal at finish: the store already holds the
    // pending value as current; only the bookkeeping is left.
    if let (Some(p), None, Some(c)) = (&r.entry.in_progress, store.get(Slot::Pending), store.primary(Slot::Current)) {
        if p.pending_fingerprint == fingerprint(c) {
            return r.record_crashed_finish(&store).await;
        }
    }

    let resumed = r.entry.in_progress.clone().filter(|_| store.get(Slot::Pending).is_some());
    let pending = match &resumed {
        Some(p) => {
            r.out.steps.push(format!("resumed after {:?}", p.step).to_lowercase());
            store.get(Slot::Pending).cloned().expect("checked")
        }
        None => r.create(&mut store, current.as_ref()).await?,
    };
    let reached = r.entry.in_progress.as_ref().map(|p| p.step).unwrap_or(Step::Created);

    if reached < Step::Set {
        r.kind.set(ctx, spec, &pending).await.map_err(|e| e.context("set"))?;
        r.reach(Step::Set)?;
        r.out.steps.push("set".into());
        crash_point("set");
    }
    if reached < Step::Tested {
        r.test(&mut store, &pending, current.as_ref()).await?;
        r.reach(Step::Tested)?;
        r.out.steps.push("tested".into());
        crash_point("tested");
    }
    r.finish(&mut store, &pending, current.as_ref()).await
}

impl Rotation<'_> {
    fn journal(&mut self) -> Result<(), StepError> {
        self.state.secrets.insert(self.spec.name.clone(), self.entry.clone());
        save_state(&self.ctx.profile, self.state).map_err(StepError::from)
    }

    /// Journals that the rotation under way reached `step`.
    fn reach(&mut self, step: Step) -> Result<(), StepError> {
        self.entry.in_progress.as_mut().expect("in progress").step = step;
        self.journal()
    }

    /// create: the pending value goes to the store first, so nothing is ever known only in memory.
    async fn create(&mut self, store: &mut Slots, current: Option<&Fields>) -> Result<Fields, StepError> {
        let (spec, kind) = (self.spec, self.kind);
        let (value, plaintext) = kind.create(spec, current, store).await?;
        if let Some(plaintext) = plaintext {
            match &spec.plaintext_file {
                Some(file) => crate::files::write_atomic(file, format!("{plaintext}\n").as_bytes(), Some(0o600))
                    .map_err(|e| StepError::failed(format!("write {}: {e}", file.display())))?,
                None => self.out.plaintext = Some(plaintext),
            }
        }
        if let Err(e) = store.put_pending(&value).await {
            // A credential created at a provider but not stored would be orphaned.
            let undo = kind.roll_back(self.ctx, spec, &value, current).await;
            let e = StepError::from(e).context("create");
            return Err(match undo {
                Err(u) if kind.live_when_created() => StepError {
                    message: format!("{}; the new credential could not be removed either ({})", e.message, u.message),
                    ..e
                },
                _ => e,
            });
        }
        self.entry.in_progress = Some(Progress {
            step: Step::Created,
            pending_fingerprint: fingerprint(spec.primary(&value)),
            started: Utc::now(),
        });
        self.journal()?;
        self.out.steps.push("created".into());
        crash_point("created");
        Ok(value)
    }

    /// test; a failure rolls the target back and drops the pending value, so the store's current
    /// value is the one in use.
    async fn test(&mut self, store: &mut Slots, pending: &Fields, current: Option<&Fields>) -> Result<(), StepError> {
        let Err(e) = self.kind.test(self.spec, pending, current).await else { return Ok(()) };
        let rollback = self.kind.roll_back(self.ctx, self.spec, pending, current).await;
        let dropped = store.drop_pending().await;
        self.entry.in_progress = None;
        self.journal()?;
        let mut message = match rollback {
            Ok(()) => format!("test failed ({}); rolled back, the current value is unchanged", e.message),
            Err(r) => format!("test failed ({}); ROLLBACK FAILED ({}): check the target by hand", e.message, r.message),
        };
        if let Err(d) = dropped {
            message.push_str(&format!("; the pending value is still in the store ({d})"));
        }
        Err(StepError::failed(message))
    }

    /// finish: pending becomes current, current becomes previous (unless the kind's old value is
    /// dead once replaced), and the outgoing value's revocation is scheduled.
    async fn finish(&mut self, store: &mut Slots, pending: &Fields, current: Option<&Fields>) -> Result<(), StepError> {
        let spec = self.spec;
        let grace = parse_duration("grace", &spec.name, &spec.grace)?.unwrap_or_default();
        let keep = self.kind.irreversible(spec).is_none();
        let pending_fp = fingerprint(spec.primary(pending));
        store.finish(keep && current != Some(pending)).await.map_err(|e| StepError::from(e).context("finish"))?;
        crash_point("stored");
        self.entry.revoke = current.and_then(|old| revocation(self.kind, spec, old, pending, grace));
        self.record_finish(current.map(|c| fingerprint(spec.primary(c))), pending_fp.clone());
        self.journal()?;
        self.out.steps.push("finished".into());
        self.out.fingerprint = Some(pending_fp);
        crash_point("finished");
        if grace.is_zero() {
            revoke_due(self.ctx, spec, self.state, self.out).await?;
        }
        Ok(())
    }

    /// The bookkeeping of a finish whose store write happened but whose journal write did not.
    async fn record_crashed_finish(&mut self, store: &Slots) -> Result<(), StepError> {
        let spec = self.spec;
        let fp = fingerprint(store.primary(Slot::Current).expect("checked"));
        // The revocation finish would have scheduled: the replaced value is in the previous slot.
        let grace = parse_duration("grace", &spec.name, &spec.grace)?.unwrap_or_default();
        let (old, new) = (store.get(Slot::Previous), store.get(Slot::Current));
        self.entry.revoke = old.zip(new).and_then(|(old, new)| revocation(self.kind, spec, old, new, grace));
        self.record_finish(old.map(|o| fingerprint(spec.primary(o))), fp.clone());
        self.journal()?;
        self.out.steps.push("finished (recorded after a crash)".into());
        self.out.fingerprint = Some(fp);
        if grace.is_zero() {
            revoke_due(self.ctx, spec, self.state, self.out).await?;
        }
        Ok(())
    }

    /// Records `fingerprint` as the current value's, rotated now. The outgoing value's history is
    /// kept for a rollback: its rotation time only if the state's record is about that very value.
    fn record_finish(&mut self, outgoing: Option<String>, fingerprint: String) {
        let entry = &mut self.entry;
        entry.previous_rotated_at = entry.rotated_at.filter(|_| outgoing.is_some() && entry.fingerprint == outgoing);
        entry.previous_fingerprint = outgoing;
        entry.rotated_at = Some(Utc::now());
        entry.fingerprint = Some(fingerprint);
        entry.in_progress = None;
    }
}

/// What to revoke once `old` has been replaced by `new`, and when: the previous login
/// (alternating), access key, credential or value, after the grace period. Without a grace
/// period it is revoked at once, random values included.
fn revocation(kind: &dyn Rotator, spec: &SecretSpec, old: &Fields, new: &Fields, grace: Duration) -> Option<Revoke> {
    if old == new {
        return None;
    }
    let what = kind.revocation(spec, old, new)?;
    Some(Revoke { what, after: Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default() })
}

/// Revokes the previous login, key, credential or value once its grace period is over.
async fn revoke_due(ctx: &Context, spec: &SecretSpec, state: &mut State, out: &mut Outcome) -> Result<(), StepError> {
    let Some(entry) = state.secrets.get(&spec.name).cloned() else { return Ok(()) };
    let Some(revoke) = entry.revoke.clone() else { return Ok(()) };
    if revoke.after > Utc::now() {
        return Ok(());
    }
    let mut store = spec.slots().await?;
    spec.rotator().revoke(ctx, spec, &revoke.what, &store).await?;
    if revoke.what.strip_prefix("login ").is_none() || store.get(Slot::Previous).is_some() {
        store.drop_previous().await.map_err(|e| StepError::from(e).context("revoke"))?;
    }
    let mut entry = entry;
    entry.revoke = None;
    state.secrets.insert(spec.name.clone(), entry);
    save_state(&ctx.profile, state)?;
    out.steps.push(format!("revoked {}", revoke.what));
    Ok(())
}

/// Which secrets a run touches.
pub enum Selection {
    Names(Vec<String>),
    Due,
    /// Only unfinished rotations and due revocations.
    Resume,
}

/// The secrets a run with `selection` rotates (besides the revocations that are due).
pub async fn selected<'a>(ctx: &'a Context, selection: &Selection) -> Result<Vec<&'a SecretSpec>, RotateError> {
    let standings = super::status(ctx).await?;
    let state = load_state(&ctx.profile)?;
    Ok(match selection {
        Selection::Names(names) => {
            for n in names {
                ctx.spec(n)?;
            }
            ctx.specs.iter().filter(|s| names.contains(&s.name)).collect()
        }
        Selection::Due => ctx
            .specs
            .iter()
            .filter(|s| standings.iter().any(|st| st.name == s.name && (st.due || st.in_progress.is_some())))
            .collect(),
        Selection::Resume => {
            ctx.specs.iter().filter(|s| state.secrets.get(&s.name).is_some_and(|e| e.in_progress.is_some())).collect()
        }
    })
}

/// Refuses, before anything is rotated, a password-hash secret without plaintext_file when
/// there is no terminal to show its one-time plaintext on: it must never land in a log.
pub async fn check_plaintext_destination(
    ctx: &Context,
    selection: &Selection,
    terminal: bool,
) -> Result<(), RotateError> {
    if terminal {
        return Ok(());
    }
    let homeless: Vec<String> = selected(ctx, selection)
        .await?
        .into_iter()
        .filter(|s| s.kind == Kind::PasswordHash && s.plaintext_file.is_none())
        .map(|s| s.name.clone())
        .collect();
    if homeless.is_empty() {
        return Ok(());
    }
    Err(RotateError::NoPlaintextFile { names: homeless, profile: ctx.profile.clone() })
}

pub async fn run(ctx: &Context, selection: Selection) -> Result<Vec<Outcome>, RotateError> {
    let _lock = crate::lock::try_lock(
        "rotate-secrets",
        &format!("profile {}", ctx.profile),
        &format!("rotate-secrets run (profile {})", ctx.profile),
    )?;
    let chosen = selected(ctx, &selection).await?;
    let mut state = load_state(&ctx.profile)?;
    let mut outcomes = Vec::new();
    for spec in &ctx.specs {
        let rotate = chosen.iter().any(|c| c.name == spec.name);
        if rotate {
            outcomes.push(rotate_one(ctx, spec, &mut state).await);
        } else if state
            .secrets
            .get(&spec.name)
            .is_some_and(|e| e.revoke.as_ref().is_some_and(|r| r.after <= Utc::now()))
        {
            let mut o = Outcome::new(&spec.name, true);
            if let Err(e) = revoke_due(ctx, spec, &mut state, &mut o).await {
                o.fail(e);
            }
            outcomes.push(o);
        }
    }
    Ok(outcomes)
}

/// Puts the previous value back as current (random values, and alternating logins still inside
/// their grace period).
pub async fn rollback(ctx: &Context, name: &str) -> Result<Outcome, RotateError> {
    let _lock =
        crate::lock::try_lock("rotate-secrets", &format!("profile {}", ctx.profile), "rotate-secrets rollback")?;
    let spec = ctx.spec(name)?;
    let kind = spec.rotator();
    if let Some(what) = kind.irreversible(spec) {
        return Err(RotateError::Irreversible { name: name.to_string(), what });
    }
    let mut store = spec.slots().await?;
    let previous = store
        .get(Slot::Previous)
        .cloned()
        .ok_or_else(|| RotateError::NoPrevious { name: name.to_string(), store: spec.store.clone() })?;
    let current = store.get(Slot::Current).cloned();
    kind.restore(ctx, spec, &previous).await?;
    store.swap_previous().await?;
    let mut state = load_state(&ctx.profile)?;
    let entry = state.secrets.entry(spec.name.clone()).or_default();
    let restored = fingerprint(spec.primary(&previous));
    let rolled_away = current.as_ref().map(|c| fingerprint(spec.primary(c)));
    // The evidence follows the value: the one put back keeps the rotation time it had (none if
    // opsbook never rotated it in, so it is due again), and the one rolled away becomes the
    // previous value with its own, so rolling back twice restores both.
    let restored_at = entry.previous_rotated_at.filter(|_| entry.previous_fingerprint.as_ref() == Some(&restored));
    entry.previous_rotated_at = entry.rotated_at.filter(|_| rolled_away.is_some() && entry.fingerprint == rolled_away);
    entry.previous_fingerprint = rolled_away.clone();
    entry.rotated_at = restored_at;
    entry.fingerprint = Some(restored.clone());
    // The rolled-away login, key, credential or value is revoked by the next run.
    entry.revoke = current
        .as_ref()
        .and_then(|c| kind.revocation(spec, c, &previous))
        .map(|what| Revoke { what, after: Utc::now() });
    save_state(&ctx.profile, &state)?;
    let mut outcome = Outcome::new(name, true);
    outcome.steps.push("rolled back".into());
    outcome.fingerprint = Some(restored);
    outcome.previous_fingerprint = rolled_away;
    Ok(outcome)
}
