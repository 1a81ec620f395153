//! Link events of drivers whose protocol crate keeps the link up by itself.

use super::{DeviceActor, DeviceState};
use crate::actors::shared::LinkState;
use crate::domain::QualityReason;
use crate::drivers::LinkEvent;

impl DeviceActor {
    /// A link event of a driver whose crate reconnects by itself. Tags go Bad when a
    /// connect attempt fails; a peer closing an idle link is not a loss until a poll
    /// finds the device unreachable.
    pub(super) fn link(st: &mut DeviceState, event: LinkEvent) {
        let state = st.state();
        let answering = matches!(state, LinkState::Online | LinkState::Degraded);
        match event {
            // An attempt is no news: the state stays what the last poll or link
            // event made it.
            LinkEvent::Connecting => {}
            LinkEvent::Connected => {
                // A link that is up is no answer yet: the next poll says whether this
                // device answers (a unit id behind a shared gateway may not, and this
                // event may arrive after a poll found it silent). A device with nothing
                // to poll has only the link to go by.
                let polled = st.groups.iter().any(|g| !g.empty);
                if !polled && !answering {
                    st.set_state(LinkState::Online, None);
                }
            }
            LinkEvent::ConnectFailed { retry_in_ms } => {
                st.set_state(
                    LinkState::Offline,
                    Some(format!("connect failed; retrying in {retry_in_ms} ms")),
                );
                st.mark_bad(QualityReason::CommLost);
            }
            LinkEvent::Disconnected { retry_in_ms } => {
                // A working link closed (a peer closing idle links does): it is being
                // opened again. A device already OFFLINE (its polls fail, e.g. a TLS
                // handshake that never completes) stays OFFLINE.
                let state = if answering {
                    LinkState::Connecting
                } else {
                    state
                };
                st.set_state(
                    state,
                    Some(format!("link closed; reconnecting in {retry_in_ms} ms")),
                );
                // A device that pushes (nothing to poll) gets no news while the link is
                // down: its values are lost until it is back.
                let polled = st.groups.iter().any(|g| !g.empty);
                if !polled {
                    st.mark_bad(QualityReason::CommLost);
                }
            }
            LinkEvent::Answered => {
                if state != LinkState::Online {
                    st.set_state(LinkState::Online, None);
                }
            }
            LinkEvent::Silent { error } => {
                st.set_state(LinkState::Offline, Some(error));
                st.mark_bad(QualityReason::CommLost);
            }
            LinkEvent::Trouble { error } => st.set_state(LinkState::Degraded, Some(error)),
        }
    }
}
