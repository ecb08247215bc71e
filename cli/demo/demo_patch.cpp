// The demo's patch object: a fixed version of the running program's function,
// built as a shared object and loaded into the program while it runs.
extern "C" long demo_interest_fixed(long cents, int days) {
  // The fix: interest accrues per day on the balance, rounding to the nearest cent.
  return cents + (cents * 5 * days + 18250) / 36500;
}
