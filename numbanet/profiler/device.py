"""CUDA events around each gpu call (numba.cuda.event on the default stream), read once
at the end of a profile: the device time of every call without a sync per call."""
import time


class DeviceTimer:
    def __init__(self):
        from numba import cuda
        self._cuda = cuda
        self.origin = cuda.event()
        self.origin.record()
        self.origin_host = time.perf_counter_ns()

    def start(self):
        event = self._cuda.event()
        event.record()
        return [event, None]

    def stop(self, events):
        event = self._cuda.event()
        event.record()
        events[1] = event

    def resolve(self, calls):
        """Fill device_total, device_ns (its own, children's less) and device_start of the
        calls this timer timed. Events without timing (the simulator's elapsed_time is
        negative) leave them None: the host times stand."""
        self._cuda.synchronize()
        timed = [c for c in calls if c.events is not None]
        for call in timed:
            first, last = call.events
            ms = first.elapsed_time(last)
            if ms >= 0:
                call.device_total = int(ms * 1e6)
                call.device_start = self.origin_host + int(self.origin.elapsed_time(first) * 1e6)
        for call in timed:
            if call.device_total is not None:
                below = sum(c.device_total or 0 for c in call.children)
                call.device_ns = max(call.device_total - below, 0)
            call.events = None   # the events are released with the profile's calls
