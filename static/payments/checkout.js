// Checkout page: coin picker, JSON submit; result page: status polling.
(function () {
  "use strict";
  const form = document.getElementById("checkout-form");
  if (form) {
    const picker = document.getElementById("coin-picker");
    const select = document.getElementById("crypto_currency");
    const showCoins = () => {
      const chosen = form.querySelector("input[name=payment_gateway]:checked");
      const coins = chosen && chosen.dataset.options ? chosen.dataset.options.split(",") : [];
      picker.hidden = coins.length < 2;
      select.disabled = coins.length < 2;
      if (coins.length >= 2 && select.dataset.for !== chosen.value) {
        select.replaceChildren(...coins.map((c) => new Option(c, c)));
        select.dataset.for = chosen.value;
      }
    };
    form.addEventListener("change", showCoins);
    showCoins();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = document.getElementById("pay-button");
      const error = document.getElementById("form-error");
      button.disabled = true;
      error.hidden = true;
      const data = new FormData(form);
      try {
        const response = await fetch(form.action, {
          method: "POST",
          body: data,
          headers: { Accept: "application/json", "Idempotency-Key": form.dataset.key || (form.dataset.key = crypto.randomUUID()) },
        });
        const body = await response.json();
        if (response.status === 201 && body.payment_url) {
          window.location.assign(body.payment_url);
          return;
        }
        const fields = Object.entries(body.fields || {}).map(([k, v]) => `${k}: ${v.join(" ")}`);
        error.textContent = [body.error, ...fields].join(" — ");
        if (response.status !== 201) form.dataset.key = "";
      } catch (e) {
        error.textContent = "Network problem: please try again.";
        form.dataset.key = "";
      }
      error.hidden = false;
      button.disabled = false;
    });
  }
  const result = document.getElementById("result");
  if (result && result.dataset.status === "PENDING") {
    const poll = async () => {
      try {
        const response = await fetch(result.dataset.statusUrl, { headers: { Accept: "application/json" } });
        const body = await response.json();
        if (body.status && body.status !== "PENDING") {
          window.location.reload();
          return;
        }
      } catch (e) { /* try again later */ }
      setTimeout(poll, Number(result.dataset.poll || 5) * 1000);
    };
    setTimeout(poll, Number(result.dataset.poll || 5) * 1000);
  }
})();
