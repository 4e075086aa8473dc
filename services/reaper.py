"""Dead runs, found by the servers' side, whichever machine ran them.

Every flow run sends Prefect a heartbeat event (every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds); the
automation below marks a flow run Crashed when `dead_after` seconds pass without one and without a final
state. The reaper (`python -m services.reaper`, one of the stack's processes) then marks KILLED each MLflow
run still RUNNING whose flow run (its `prefect_flow_run_id` tag) has ended: nothing can finish it any more.
"""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.client.schemas.objects import State, StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

AUTOMATION = "lstm-pipeline: crash silent flow runs"
ENDED = ("Completed", "Failed", "Cancelled", "Crashed")


def silent_runs_automation(dead_after: int) -> Automation:
    """After a flow run's heartbeat, expect another heartbeat or a final state within `dead_after` s;
    otherwise mark the flow run Crashed (Prefect's recipe for "zombie" flow runs)."""
    return Automation(
        name=AUTOMATION,
        description="Marks a flow run Crashed when its process stops sending heartbeats (killed, machine lost).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in ENDED)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=dead_after),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                    message=f"no heartbeat for {dead_after} s: its process or machine is gone")],
    )


def apply_automation(dead_after: int) -> None:
    """Create the automation on the Prefect server of this process's settings, replacing an older one."""
    try:
        Automation.read(name=AUTOMATION).delete()
    except ValueError:  # Prefect's way of saying there is none
        pass
    silent_runs_automation(dead_after).create()


def reap(flow_run_state) -> list[str]:
    """Mark KILLED the RUNNING MLflow runs whose flow run has ended; returns their ids.
    `flow_run_state(id)` is the flow run's State, or None when this Prefect server does not know it."""
    from tasks.tracking import runs

    killed = []
    for run_id, tags in runs.running_runs():
        flow_run_id = tags.get("prefect_flow_run_id")
        state: State | None = flow_run_state(flow_run_id) if flow_run_id else None
        # The flow run's state is read first: once it is final, a run still RUNNING can no longer end.
        if state is not None and state.is_final() and runs.kill_run(
                run_id, f"its Prefect flow run {flow_run_id} ended {state.name} without finishing the run; "
                        "marked KILLED by the stack's reaper"):
            killed.append(run_id)
    return killed


def main(every: float = 5) -> None:
    """Reap every `every` seconds until stopped; a server that does not answer is tried again next round."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from tasks.tracking import store

    store.connect()
    with get_client(sync_client=True) as client:
        def flow_run_state(flow_run_id: str) -> State | None:
            try:
                return client.read_flow_run(UUID(flow_run_id)).state
            except (ObjectNotFound, ValueError):  # another server's run, or not an id
                return None

        while True:
            try:
                for run_id in reap(flow_run_state):
                    print(f"MLflow run {run_id} marked KILLED: its flow run ended", flush=True)
            except Exception as exc:  # noqa: BLE001 - a server restarting; the next round tries again
                print(f"reaper: {type(exc).__name__}: {exc}", flush=True)
            time.sleep(every)


if __name__ == "__main__":
    main()
