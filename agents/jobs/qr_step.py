"""The `qr` step: search a QR candidate clip for the passenger's ticket."""

from __future__ import annotations

from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.step_input import int_input, ledger_file, stored
from agents.pipeline.errors import RetryableStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from agents.qr.decode import QrResult, QrSafetyStop, decode_clip
from storage import media
from streams import records

KIND = kinds.QR


def qr_scan(result: QrResult) -> media.QrScan:
    booking = result.booking
    return media.QrScan(
        status=str(result.status),
        payload=result.payload,
        booking_id=booking.booking_id if booking else None,
        passenger=booking.passenger if booking else None,
        product=booking.product if booking else None,
        frame_s=result.frame_time_s,
        decoder=result.decoder,
        reason=result.reason,
        elapsed_ms=result.elapsed_ms,
        email=booking.email if booking else None,
        email_warning=booking.email_warning if booking else "",
    )


def handler(jc: JobContext) -> Handler:
    async def qr_step(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        file_id = int_input(request, "file_id")
        path = stored(jc, await ledger_file(jc, file_id))
        try:
            result = await ctx.run_blocking(decode_clip, path, jc.qr)
        except QrSafetyStop as exc:  # an error with its reason, never a silent "no QR"
            raise RetryableStepError(str(exc)) from None
        async with jc.engine.begin() as conn:
            await media.save_qr(conn, file_id, qr_scan(result))
        ctx.log(
            f"qr {result.status}: {result.reason or result.decoder} "
            f"({result.frames_decoded} frames, {result.elapsed_ms:.0f} ms)"
        )
        booking = result.booking
        if booking is not None and booking.email_warning:
            ctx.log(booking.email_warning, "warning")
        return StepOutput(
            {
                "status": str(result.status),
                "booking_id": booking.booking_id if booking else None,
                "passenger": booking.passenger if booking else None,
                "frame_s": result.frame_time_s,
                "decoder": result.decoder,
                "reason": result.reason,
            }
        )

    return qr_step
