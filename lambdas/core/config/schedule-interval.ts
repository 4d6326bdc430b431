// How far apart a target's backups can be: the longest gap between two consecutive firings of its
// EventBridge Scheduler expression. The freshness alarm waits twice that long for a verified snapshot.

const minute = 60;
const hour = 60 * minute;
const day = 24 * hour;

/**
 * The longest gap, in seconds, between consecutive firings of `rate(...)` or `cron(...)` (UTC).
 * `L`, `W` and `#` are simulated over two years. `Infinity` when the expression names years (it stops
 * firing) or never fires.
 */
export function longestScheduleGapSeconds(expression: string): number {
  const rate = /^rate\((\d+)\s+(minutes?|hours?|days?)\)$/.exec(expression.trim());
  if (rate) {
    const value = Number(rate[1]);
    if (value < 1) throw new Error(`schedule ${expression}: the rate must be at least 1`);
    const unit = (rate[2] as string).replace(/s$/, "");
    return value * (unit === "minute" ? minute : unit === "hour" ? hour : day);
  }
  const cron = /^cron\((.+)\)$/.exec(expression.trim());
  if (cron) return longestCronGapSeconds(cron[1] as string, expression);
  throw new Error(`schedule ${expression}: expected rate(...) or cron(...)`);
}

const monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const weekdayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/** A year of firings is enough to see every month length and weekday pattern. */
const sampleStart = Date.UTC(2027, 0, 1);
const sampleDays = 2 * 366;

function longestCronGapSeconds(fields: string, expression: string): number {
  const parts = fields.trim().split(/\s+/);
  if (parts.length !== 6) {
    throw new Error(
      `schedule ${expression}: a cron expression has 6 fields (minutes hours day-of-month month day-of-week year)`,
    );
  }
  const [minutes, hours, dayOfMonth, month, dayOfWeek, year] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  // A year list ends the schedule: no gap is long enough after its last firing.
  if (year !== "*") return Number.POSITIVE_INFINITY;
  if ((dayOfMonth === "?") === (dayOfWeek === "?")) {
    throw new Error(`schedule ${expression}: exactly one of day-of-month and day-of-week must be '?'`);
  }
  const minuteSet = [...parseField(minutes, 0, 59, [], expression)].sort((a, b) => a - b);
  const hourSet = [...parseField(hours, 0, 23, [], expression)].sort((a, b) => a - b);
  const monthSet = parseField(month, 1, 12, monthNames, expression);
  const firesOn =
    dayOfMonth === "?" ? dayOfWeekMatcher(dayOfWeek, expression) : dayOfMonthMatcher(dayOfMonth, expression);

  let previous: number | undefined;
  let longest = 0;
  for (let index = 0; index < sampleDays; index++) {
    const date = new Date(sampleStart + index * day * 1000);
    if (!monthSet.has(date.getUTCMonth() + 1) || !firesOn(date)) continue;
    const dayStart = date.getTime() / 1000;
    for (const h of hourSet) {
      for (const m of minuteSet) {
        const firing = dayStart + h * hour + m * minute;
        if (previous !== undefined) longest = Math.max(longest, firing - previous);
        previous = firing;
      }
    }
  }
  return longest === 0 ? Number.POSITIVE_INFINITY : longest;
}

type DayMatcher = (date: Date) => boolean;

const daysInMonthOf = (date: Date) =>
  new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 0)).getUTCDate();
const isWeekday = (year: number, month: number, dayOfMonth: number) => {
  const weekday = new Date(Date.UTC(year, month, dayOfMonth)).getUTCDay();
  return weekday !== 0 && weekday !== 6;
};

/** The day-of-month field: a list of days, or `L` (last day), `LW` (last weekday), `nW` (weekday nearest n). */
function dayOfMonthMatcher(field: string, expression: string): DayMatcher {
  if (field === "L") return (date) => date.getUTCDate() === daysInMonthOf(date);
  if (field === "LW") {
    return (date) => date.getUTCDate() === nearestWeekday(date, daysInMonthOf(date));
  }
  const nearest = /^(\d+)W$/.exec(field);
  if (nearest) {
    const target = Number(nearest[1]);
    if (target < 1 || target > 31) throw new Error(`schedule ${expression}: '${field}' is outside 1-31`);
    return (date) => target <= daysInMonthOf(date) && date.getUTCDate() === nearestWeekday(date, target);
  }
  const days = parseField(field, 1, 31, [], expression);
  return (date) => days.has(date.getUTCDate());
}

/** The weekday nearest `target` in `date`'s month, never crossing into another month (cron's `W`). */
function nearestWeekday(date: Date, target: number): number {
  const year = date.getUTCFullYear();
  const month = date.getUTCMonth();
  if (isWeekday(year, month, target)) return target;
  const last = daysInMonthOf(date);
  const saturday = new Date(Date.UTC(year, month, target)).getUTCDay() === 6;
  if (saturday) return target === 1 ? 3 : target - 1;
  return target === last ? target - 2 : target + 1;
}

/** The day-of-week field (1 = Sunday): a list of weekdays, or `dL` (the last d of the month), `d#n` (the nth d). */
function dayOfWeekMatcher(field: string, expression: string): DayMatcher {
  const weekdayOf = (token: string) => [...parseField(token, 1, 7, weekdayNames, expression)][0] as number;
  const last = /^(\w+)L$/.exec(field);
  if (last) {
    const weekday = weekdayOf(last[1] as string);
    return (date) => date.getUTCDay() + 1 === weekday && date.getUTCDate() + 7 > daysInMonthOf(date);
  }
  const nth = /^(\w+)#([1-5])$/.exec(field);
  if (nth) {
    const weekday = weekdayOf(nth[1] as string);
    const occurrence = Number(nth[2]);
    return (date) => date.getUTCDay() + 1 === weekday && Math.ceil(date.getUTCDate() / 7) === occurrence;
  }
  // A bare L is the last day of the week, Saturday.
  const weekdays = field === "L" ? new Set([7]) : parseField(field, 1, 7, weekdayNames, expression);
  return (date) => weekdays.has(date.getUTCDay() + 1);
}

/** One cron field: `*`, `?`, values, names, ranges, steps and lists of them. */
function parseField(
  field: string,
  low: number,
  high: number,
  names: string[],
  expression: string,
): Set<number> {
  const values = new Set<number>();
  const numberOf = (token: string): number => {
    const named = names.indexOf(token.toUpperCase());
    const value = named >= 0 ? named + low : Number(token);
    if (!Number.isInteger(value) || value < low || value > high) {
      throw new Error(`schedule ${expression}: '${token}' is outside ${low}-${high}`);
    }
    return value;
  };
  for (const item of field.split(",")) {
    const [range = "", stepText] = item.split("/");
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw new Error(`schedule ${expression}: bad step in '${item}'`);
    let from: number;
    let to: number;
    if (range === "*" || range === "?") {
      from = low;
      to = high;
    } else if (range.includes("-")) {
      const [start = "", end = ""] = range.split("-");
      from = numberOf(start);
      to = numberOf(end);
    } else {
      from = numberOf(range);
      to = stepText === undefined ? from : high;
    }
    // A range such as FRI-MON wraps around the end of the field.
    const span = to >= from ? to - from : to + (high - low + 1) - from;
    for (let offset = 0; offset <= span; offset += step) {
      values.add(((from - low + offset) % (high - low + 1)) + low);
    }
  }
  return values;
}

/** An alarm's window over a custom metric: CloudWatch's limits on period and evaluation range applied. */
export interface AlarmWindow {
  periodSeconds: number;
  evaluationPeriods: number;
  /** The window was shortened to CloudWatch's 7-day maximum. */
  capped: boolean;
}

/** CloudWatch evaluates at most 7 days (1 day when the period is under an hour); periods stay ≤ 1 day here. */
export const maxAlarmWindowSeconds = 7 * day;
const maxPeriodSeconds = day;

/** Periods of equal length, whole minutes, covering at least `windowSeconds` (capped at 7 days). */
export function alarmWindowFor(windowSeconds: number): AlarmWindow {
  const capped = windowSeconds > maxAlarmWindowSeconds;
  const window = Math.min(windowSeconds, maxAlarmWindowSeconds);
  const evaluationPeriods = Math.max(1, Math.ceil(window / maxPeriodSeconds));
  const periodSeconds = Math.min(maxPeriodSeconds, Math.ceil(window / evaluationPeriods / minute) * minute);
  return { periodSeconds, evaluationPeriods, capped };
}

/** A duration for an alarm's description: whole days, hours or minutes. */
export function describeSeconds(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400} day(s)`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hour(s)`;
  return `${Math.round(seconds / 60)} minute(s)`;
}
