//! The generative process behind the demo backend.
//!
//! Planners estimate effort from a project's attributes; the real effort
//! differs by forces partly visible in the data (team experience, systems
//! to integrate, the team's track record, part-time staffing) and partly not
//! (noise, occasional large overruns, pauses). Work then unfolds over time as
//! tasks, logged hours and expenses, so a project's progress reveals its true
//! pace: predictions should improve as a project advances.
//!
//! Here the world and its teams; `project` plays out one project's life,
//! `draws` holds the seeded draws both use.

mod draws;
mod project;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DemoConfig, DemoData, MemberRow, StampStyle, TeamRow};
use crate::backend::time::day_start;
use draws::{days, lognormal, maybe, pick_weighted, stamp, unit};
use project::generate_project;

const ROLES: [(&str, f64); 5] = [
    ("developer", 0.50),
    ("analyst", 0.24),
    ("tester", 0.20),
    ("architect", 0.04),
    ("consultant", 0.02),
];

struct Member {
    id: i64,
    experience: f64,
    rate: f64,
}

struct Team {
    id: i64,
    /// Hidden productivity multiplier: visible only through the team's track record.
    efficiency: f64,
    members: Vec<Member>,
}

struct Ids {
    task: i64,
    entry: i64,
    expense: i64,
}

/// Builds the demo world. Deterministic for (projects, seed, as_of, shift):
/// each project draws from its own ChaCha stream, so one project's draws
/// never disturb another's.
pub fn generate(cfg: &DemoConfig) -> DemoData {
    let as_of_t = day_start(cfg.as_of);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut data = DemoData {
        as_of: cfg.as_of,
        teams: Vec::new(),
        team_members: Vec::new(),
        projects: Vec::with_capacity(cfg.projects),
        project_members: Vec::new(),
        tasks: Vec::new(),
        time_entries: Vec::new(),
        expenses: Vec::new(),
    };
    let teams = generate_teams(&mut rng, cfg, as_of_t, &mut data);
    let mut ids = Ids {
        task: 0,
        entry: 0,
        expense: 0,
    };
    for i in 0..cfg.projects {
        let mut prng = ChaCha8Rng::seed_from_u64(cfg.seed);
        prng.set_stream(i as u64 + 1);
        generate_project(
            &mut prng,
            cfg,
            as_of_t,
            &teams,
            i as i64 + 1,
            &mut ids,
            &mut data,
        );
    }
    data
}

fn generate_teams(
    rng: &mut ChaCha8Rng,
    cfg: &DemoConfig,
    as_of_t: DateTime<Utc>,
    data: &mut DemoData,
) -> Vec<Team> {
    let n_teams = cfg.projects.div_ceil(40).max(3);
    let mut teams = Vec::with_capacity(n_teams);
    let mut member_id = 0;
    for t in 0..n_teams {
        let id = t as i64 + 1;
        let created = as_of_t - days(5.0 * 365.0 + rng.gen_range(0.0..365.0));
        data.teams.push(TeamRow {
            id,
            name: format!("RPA Team {id}"),
            created_at: stamp(rng, created, StampStyle::IsoZ),
        });
        let size = rng.gen_range(4..=9);
        let mut members = Vec::with_capacity(size);
        for m in 0..size {
            member_id += 1;
            let role = if m == 0 {
                "lead"
            } else {
                ROLES[pick_weighted(rng, &ROLES.map(|r| r.1))].0
            };
            let experience =
                (5.0 * lognormal(rng, 0.55)).clamp(0.5, 30.0) + if m == 0 { 3.0 } else { 0.0 };
            let experience = (experience * 10.0).round() / 10.0;
            let premium = match role {
                "lead" => 20.0,
                "architect" => 25.0,
                "analyst" => 5.0,
                _ => 0.0,
            };
            let rate =
                ((38.0 + 3.2 * experience.min(15.0) + premium) * rng.gen_range(0.9..1.1) * 2.0)
                    .round()
                    / 2.0;
            let joined_span = (as_of_t - created).num_days().max(31) as f64 - 30.0;
            let joined = created + days(rng.gen_range(0.0..joined_span));
            data.team_members.push(MemberRow {
                id: member_id,
                team_id: id,
                name: format!("Member {member_id}"),
                role: role.to_string(),
                experience_years: maybe(rng, 0.03, experience),
                hourly_rate: maybe(rng, 0.03, rate),
                active: unit(rng) > 0.05,
                joined_at: stamp(rng, joined, StampStyle::Space),
            });
            members.push(Member {
                id: member_id,
                experience,
                rate,
            });
        }
        teams.push(Team {
            id,
            efficiency: lognormal(rng, 0.15),
            members,
        });
    }
    teams
}
