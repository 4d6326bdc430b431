import { describe, expect, it } from "vitest";
import { alarmWindowFor, longestScheduleGapSeconds } from "../../lambdas/core/config/schedule-interval.js";

const minute = 60;
const hour = 3600;
const day = 86400;

describe("longestScheduleGapSeconds", () => {
  it.each([
    ["rate(1 minute)", minute],
    ["rate(15 minutes)", 15 * minute],
    ["rate(1 hour)", hour],
    ["rate(6 hours)", 6 * hour],
    ["rate(2 days)", 2 * day],
  ])("reads %s as its interval", (expression, seconds) => {
    expect(longestScheduleGapSeconds(expression)).toBe(seconds);
  });

  it.each([
    ["cron(0 * * * ? *)", hour, "hourly"],
    ["cron(0/15 * * * ? *)", 15 * minute, "every quarter hour"],
    ["cron(0 0,12 * * ? *)", 12 * hour, "twice a day"],
    ["cron(0 1,2,23 * * ? *)", 21 * hour, "an uneven list: the longest gap counts, not the average"],
    ["cron(30 2 * * ? *)", day, "daily"],
    ["cron(30 2 ? * MON-FRI *)", 3 * day, "weekdays: Friday to Monday"],
    ["cron(0 3 ? * 2-6 *)", 3 * day, "weekdays in numbers (1 = Sunday)"],
    ["cron(0 3 ? * FRI-MON *)", 4 * day, "a weekday range wrapping over the weekend"],
    ["cron(0 4 ? * SUN *)", 7 * day, "weekly"],
    ["cron(0 4 1 * ? *)", 31 * day, "monthly: the longest month"],
  ])("finds the longest gap of %s: %i seconds (%s)", (expression, seconds) => {
    expect(longestScheduleGapSeconds(expression)).toBe(seconds);
  });

  it.each([
    // From one last day to the next: the length of the longer month (Apr 30 to May 31).
    ["cron(0 4 L * ? *)", 31 * day, "the last day of each month"],
    // The third Friday falls on the 15th-21st: from the 15th of a 30-day month to the 21st of the next.
    ["cron(0 4 ? * 6#3 *)", 35 * day, "the third Friday"],
    ["cron(0 4 ? * 6L *)", 35 * day, "the last Friday"],
    ["cron(0 4 ? * L *)", 7 * day, "a bare L in day-of-week: every Saturday"],
    // 2027-05-15 is a Saturday (fires Friday the 14th); 2027-06-15 a Tuesday.
    ["cron(0 4 15W * ? *)", 32 * day, "the weekday nearest the 15th"],
    // 2028-01-01 is a Saturday: it fires Monday the 3rd, not Friday 2027-12-31, 33 days after Dec 1.
    ["cron(0 4 1W * ? *)", 33 * day, "the weekday nearest the 1st, never in the month before"],
  ])("simulates %s: %i seconds (%s)", (expression, seconds) => {
    expect(longestScheduleGapSeconds(expression)).toBe(seconds);
  });

  it.each(["cron(0 4 * * ? 2030)", "cron(0 4 30 2 ? *)"])(
    "treats %s, which stops or never fires, as an infinite gap",
    (expression) => {
      expect(longestScheduleGapSeconds(expression)).toBe(Number.POSITIVE_INFINITY);
    },
  );

  it.each([
    ["rate(0 hours)", /at least 1/],
    ["cron(0 4 * * *)", /6 fields/],
    ["cron(0 4 * * * *)", /exactly one of day-of-month and day-of-week/],
    ["cron(61 4 * * ? *)", /outside 0-59/],
    ["at(2030-01-01T00:00:00)", /rate\(\.\.\.\) or cron/],
  ])("rejects %s", (expression, message) => {
    expect(() => longestScheduleGapSeconds(expression)).toThrow(message);
  });
});

describe("alarmWindowFor", () => {
  it("uses one period when the window fits in a day", () => {
    expect(alarmWindowFor(2 * hour)).toEqual({
      periodSeconds: 2 * hour,
      evaluationPeriods: 1,
      capped: false,
    });
    expect(alarmWindowFor(30 * minute)).toEqual({
      periodSeconds: 30 * minute,
      evaluationPeriods: 1,
      capped: false,
    });
  });

  it("splits a longer window into equal periods of at most a day, in whole minutes", () => {
    expect(alarmWindowFor(6 * day)).toEqual({ periodSeconds: day, evaluationPeriods: 6, capped: false });
    const window = alarmWindowFor(2.5 * day);
    expect(window).toEqual({ periodSeconds: 72000, evaluationPeriods: 3, capped: false });
  });

  it("caps at CloudWatch's 7-day evaluation range", () => {
    expect(alarmWindowFor(10 * day)).toEqual({ periodSeconds: day, evaluationPeriods: 7, capped: true });
  });

  it("never exceeds CloudWatch's limits (≤ 7 days; ≤ 1 day with periods under an hour)", () => {
    for (let window = 60; window <= 9 * day; window += 977) {
      const { periodSeconds, evaluationPeriods } = alarmWindowFor(window);
      const total = periodSeconds * evaluationPeriods;
      expect(periodSeconds % 60).toBe(0);
      expect(periodSeconds).toBeLessThanOrEqual(day);
      expect(total).toBeLessThanOrEqual(7 * day);
      if (periodSeconds < hour) expect(total).toBeLessThanOrEqual(day);
      expect(total).toBeGreaterThanOrEqual(Math.min(window, 7 * day));
    }
  });
});
