"""A minimal Streamlit websocket client for load benchmarks (no browser): one object per student.

It speaks the protocol the web frontend speaks (protobuf BackMsg / ForwardMsg over
``/_stcore/stream``): ask for a page, collect the elements the run sends, answer a widget by
its key with a new value. Benchmark code only: it imports Streamlit's generated protobuf
classes, which the app itself never does.
"""

from __future__ import annotations

import asyncio
import json
import time

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg


class Student:
    def __init__(self, url: str):
        self.url = url
        self.ws = None
        self.elements: dict[str, object] = {}  # widget key -> element proto (radio etc.)
        self.plot_specs: list[str] = []
        self.errors: list[str] = []  # exceptions the last run showed
        self.widget_states: dict[str, object] = {}
        self.first_plot_at: float | None = None  # perf_counter() when the last run's first chart arrived

    async def __aenter__(self):
        host = self.url.split("//", 1)[1]
        self.ws = await websockets.connect(f"ws://{host}/_stcore/stream", subprotocols=["streamlit"],
                                           origin=self.url, max_size=None)
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()

    async def run(self, page_name: str, widgets: list | None = None, timeout: float = 300.0,
                  query: str = "") -> None:
        """Run the script for ``page_name`` (``query``: the URL's query string, e.g. options of a shared link)
        and collect what it sends until the run finishes."""
        msg = BackMsg()
        cs = msg.rerun_script
        cs.page_name = page_name
        cs.query_string = query
        for w in widgets or []:
            cs.widget_states.widgets.append(w)
        self.plot_specs, self.errors, self.first_plot_at = [], [], None
        await self.ws.send(msg.SerializeToString())
        async with asyncio.timeout(timeout):
            while True:
                fm = ForwardMsg()
                fm.ParseFromString(await self.ws.recv())
                kind = fm.WhichOneof("type")
                if kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                    el = fm.delta.new_element
                    which = el.WhichOneof("type")
                    if which == "plotly_chart":
                        self.plot_specs.append(el.plotly_chart.spec)
                        if self.first_plot_at is None:  # (the browser draws a chart as soon as it arrives)
                            self.first_plot_at = time.perf_counter()
                    elif which == "radio":
                        self.elements[el.radio.id] = el.radio
                    elif which == "exception":
                        self.errors.append(el.exception.message)
                elif kind == "script_finished":
                    return

    def radio_state(self, key_part: str, option: str):
        """A WidgetState that sets the radio whose id contains ``key_part`` to ``option``."""
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        for wid, radio in self.elements.items():
            if key_part in wid:
                w = WidgetState()
                w.id = wid
                if option not in radio.options:
                    raise ValueError(f"{option!r} is not an option of {wid}")
                w.string_value = option  # a radio's state is its formatted option (Streamlit 1.67)
                return w
        raise KeyError(key_part)


def forest_x(spec: str) -> str:
    return json.dumps([t.get("x") for t in json.loads(spec)["data"]])
