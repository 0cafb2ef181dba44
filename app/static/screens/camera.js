// Camera card (operator): exposure, gain, trigger mode and a test trigger for a GenICam camera. The station refuses
// (409, with the reason) when the camera is not GenICam or not in software-trigger mode; every change is audited.
"use strict";

(() => {
  function wire() {
    const form = $("camera-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      const exposure = $("camera-exposure").value.trim();
      const gain = $("camera-gain").value.trim();
      if (exposure !== "") body.exposure_us = Number(exposure);
      if (gain !== "") body.gain_db = Number(gain);
      if ([body.exposure_us, body.gain_db].some((v) => v !== undefined && (!Number.isFinite(v) || v < 0))) {
        showMessage("Exposure and gain must be numbers of at least 0.", "bad");
        return;
      }
      const trigger = $("camera-trigger-mode").value;
      if (trigger !== "") body.trigger = trigger;
      if (!Object.keys(body).length) {
        showMessage("Enter an exposure or a gain, or choose a trigger mode.", "bad");
        return;
      }
      await sendCommand("/camera/settings", body, "Camera settings changed");
    });
    $("camera-trigger").addEventListener("click", async () => {
      await sendCommand("/camera/trigger", undefined, "Software trigger fired");
    });
  }
  document.addEventListener("DOMContentLoaded", wire);
})();
