//! Plane geometry for the DB post-processing and the crops: convex hull, minimum-area rotated
//! rectangle, polygon offsetting with round joins, polygon rasterisation and perspective
//! transforms.

/// A point in the plane.
pub type Point = [f64; 2];

/// Cross product of (a - o) and (b - o).
fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in a y-up frame, without collinear
/// points.
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut pts: Vec<Point> = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(pts.len() * 2);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point>> = if pass == 0 {
            Box::new(pts.iter())
        } else {
            Box::new(pts.iter().rev())
        };
        for p in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], *p) <= 0.0
            {
                hull.pop();
            }
            hull.push(*p);
        }
        hull.pop();
    }
    hull
}

/// A rotated rectangle as OpenCV's `RotatedRect`: centre, side lengths and angle in degrees
/// (in [-90, 0)), all single precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RotatedRect {
    /// Centre x.
    pub cx: f32,
    /// Centre y.
    pub cy: f32,
    /// Width (the side along the angle).
    pub width: f32,
    /// Height.
    pub height: f32,
    /// Angle in degrees.
    pub angle: f32,
}

/// The convex hull of a closed point sequence as OpenCV's `convexHull(points,
/// clockwise=false)` lists it: no collinear points, clockwise on screen (y down), starting at the
/// hull vertex that comes first in the input when the input runs the same way, or last when it
/// runs the other way (OpenCV shifts the hull so its input indices ascend or descend).
pub fn ordered_hull(points: &[Point]) -> Vec<Point> {
    let hull = convex_hull(points);
    if hull.len() < 3 {
        return hull;
    }
    let mut twice_area = 0.0;
    for i in 0..points.len() {
        let (a, b) = (points[i], points[(i + 1) % points.len()]);
        twice_area += a[0] * b[1] - b[0] * a[1];
    }
    let index_of = |v: &Point| -> usize {
        if twice_area >= 0.0 {
            points.iter().position(|p| p == v).unwrap_or(0)
        } else {
            points.iter().rposition(|p| p == v).unwrap_or(0)
        }
    };
    let pick = if twice_area >= 0.0 {
        (0..hull.len()).min_by_key(|i| index_of(&hull[*i]))
    } else {
        (0..hull.len()).max_by_key(|i| index_of(&hull[*i]))
    };
    let mut out = hull;
    out.rotate_left(pick.unwrap_or(0));
    out
}

/// The rotating calipers over a hull (clockwise on screen), in single precision step for step
/// as OpenCV runs them; returns a corner and the two side vectors of the smallest rectangle.
fn calipers(hull: &[[f32; 2]]) -> ([f32; 2], [f32; 2], [f32; 2]) {
    let n = hull.len();
    let mut vect = vec![[0f32; 2]; n];
    let mut inv_len = vec![0f32; n];
    let (mut left, mut bottom, mut right, mut top) = (0usize, 0usize, 0usize, 0usize);
    let (mut left_x, mut right_x, mut top_y, mut bottom_y) =
        (hull[0][0], hull[0][0], hull[0][1], hull[0][1]);
    for i in 0..n {
        let p0 = hull[i];
        if p0[0] < left_x {
            left_x = p0[0];
            left = i;
        }
        if p0[0] > right_x {
            right_x = p0[0];
            right = i;
        }
        if p0[1] > top_y {
            top_y = p0[1];
            top = i;
        }
        if p0[1] < bottom_y {
            bottom_y = p0[1];
            bottom = i;
        }
        let p1 = hull[(i + 1) % n];
        let dx = p1[0] as f64 - p0[0] as f64;
        let dy = p1[1] as f64 - p0[1] as f64;
        vect[i] = [dx as f32, dy as f32];
        inv_len[i] = (1.0 / (dx * dx + dy * dy).sqrt()) as f32;
    }
    let mut orientation = 0f32;
    {
        let (mut ax, mut ay) = (vect[n - 1][0] as f64, vect[n - 1][1] as f64);
        for v in &vect {
            let (bx, by) = (v[0] as f64, v[1] as f64);
            let convexity = ax * by - ay * bx;
            if convexity != 0.0 {
                orientation = if convexity > 0.0 { 1.0 } else { -1.0 };
                break;
            }
            (ax, ay) = (bx, by);
        }
    }
    let (mut base_a, mut base_b) = (orientation, 0f32);
    let mut seq = [bottom, right, top, left];
    let mut min_area = f32::MAX;
    // (left point, base_a, width, base_b, height, bottom point)
    let mut best = (left, base_a, 0f32, base_b, 0f32, bottom);
    // Whether `v1` turned a quarter clockwise points away from `v2`.
    let right_of = |v1: [f32; 2], v2: [f32; 2]| v1[1] * v2[0] + (-v1[0]) * v2[1] < 0.0;
    for _ in 0..n {
        let rot = [
            vect[seq[0]],
            [vect[seq[1]][1], -vect[seq[1]][0]],
            [-vect[seq[2]][0], -vect[seq[2]][1]],
            [-vect[seq[3]][1], vect[seq[3]][0]],
        ];
        let mut main = 0;
        for i in 1..4 {
            if right_of(rot[i], rot[main]) {
                main = i;
            }
        }
        let pi = seq[main];
        let lead_x = vect[pi][0] * inv_len[pi];
        let lead_y = vect[pi][1] * inv_len[pi];
        (base_a, base_b) = match main {
            0 => (lead_x, lead_y),
            1 => (lead_y, -lead_x),
            2 => (-lead_x, -lead_y),
            _ => (-lead_y, lead_x),
        };
        seq[main] = (seq[main] + 1) % n;
        let dx = hull[seq[1]][0] - hull[seq[3]][0];
        let dy = hull[seq[1]][1] - hull[seq[3]][1];
        let width = dx * base_a + dy * base_b;
        let dx = hull[seq[2]][0] - hull[seq[0]][0];
        let dy = hull[seq[2]][1] - hull[seq[0]][1];
        let height = -dx * base_b + dy * base_a;
        let area = width * height;
        if area <= min_area {
            min_area = area;
            best = (seq[3], base_a, width, base_b, height, seq[0]);
        }
    }
    let (l, a1, width, b1, height, b) = best;
    let (a2, b2) = (-b1, a1);
    let c1 = a1 * hull[l][0] + hull[l][1] * b1;
    let c2 = a2 * hull[b][0] + hull[b][1] * b2;
    let idet = 1.0 / (a1 * b2 - a2 * b1);
    let px = (c1 * b2 - c2 * b1) * idet;
    let py = (a1 * c2 - a2 * c1) * idet;
    (
        [px, py],
        [a1 * width, b1 * width],
        [a2 * height, b2 * height],
    )
}

/// `cv2.minAreaRect` (OpenCV 5), bit for bit: the hull as [`ordered_hull`] gives it, the
/// single-precision rotating calipers, and the angle normalised into [-90, 0) with width and
/// height swapped on each quarter turn.
pub fn min_area_rect(points: &[Point]) -> RotatedRect {
    let hull: Vec<[f32; 2]> = ordered_hull(points)
        .iter()
        .map(|p| [p[0] as f32, p[1] as f32])
        .collect();
    match hull.len() {
        0 => RotatedRect {
            cx: 0.0,
            cy: 0.0,
            width: 0.0,
            height: 0.0,
            angle: 0.0,
        },
        1 => RotatedRect {
            cx: hull[0][0],
            cy: hull[0][1],
            width: 0.0,
            height: 0.0,
            angle: 0.0,
        },
        2 => {
            let (p, q) = (hull[0], hull[1]);
            let (dx, dy) = (q[0] as f64 - p[0] as f64, q[1] as f64 - p[1] as f64);
            RotatedRect {
                cx: (p[0] + q[0]) * 0.5,
                cy: (p[1] + q[1]) * 0.5,
                width: (dx * dx + dy * dy).sqrt() as f32,
                height: 0.0,
                angle: (dy.atan2(dx) as f32 as f64 * 180.0 / std::f64::consts::PI) as f32,
            }
        }
        _ => {
            let (corner, v1, v2) = calipers(&hull);
            let cx = corner[0] + (v1[0] + v2[0]) * 0.5;
            let cy = corner[1] + (v1[1] + v2[1]) * 0.5;
            let mut width = ((v1[0] as f64).powi(2) + (v1[1] as f64).powi(2)).sqrt() as f32;
            let mut height = ((v2[0] as f64).powi(2) + (v2[1] as f64).powi(2)).sqrt() as f32;
            let mut deg = (v1[1] as f64).atan2(v1[0] as f64) * 180.0 / std::f64::consts::PI;
            while deg >= 0.0 {
                deg -= 90.0;
                std::mem::swap(&mut width, &mut height);
            }
            while deg < -90.0 {
                deg += 90.0;
                std::mem::swap(&mut width, &mut height);
            }
            RotatedRect {
                cx,
                cy,
                width,
                height,
                angle: deg as f32,
            }
        }
    }
}

/// `cv2.boxPoints`: the four corners, in OpenCV 5's order and arithmetic.
pub fn box_points(r: &RotatedRect) -> [[f32; 2]; 4] {
    let rad = r.angle as f64 * std::f64::consts::PI / 180.0;
    let b = rad.cos() as f32 * 0.5;
    let a = rad.sin() as f32 * 0.5;
    let (cx, cy, w, h) = (r.cx, r.cy, r.width, r.height);
    [
        [(cx - a * h) - b * w, (cy + b * h) - a * w],
        [(cx + a * h) - b * w, (cy - b * h) - a * w],
        [(cx + a * h) + b * w, (cy - b * h) + a * w],
        [(cx - a * h) + b * w, (cy + b * h) + a * w],
    ]
}

/// rapidocr's `get_mini_boxes`: the minimum-area rectangle of the point sequence `points`
/// (its order matters, see [`ordered_hull`]) with its corners ordered top-left, top-right,
/// bottom-right, bottom-left (sorted by x, then each pair by y), and its shorter side.
pub fn mini_box(points: &[Point]) -> ([[f32; 2]; 4], f32) {
    let rect = min_area_rect(points);
    let mut pts = box_points(&rect).to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (i1, i4) = if pts[1][1] > pts[0][1] {
        (0, 1)
    } else {
        (1, 0)
    };
    let (i2, i3) = if pts[3][1] > pts[2][1] {
        (2, 3)
    } else {
        (3, 2)
    };
    let sside = rect.width.min(rect.height);
    ([pts[i1], pts[i2], pts[i3], pts[i4]], sside)
}

/// Puts an offset outline (clockwise on screen, as [`offset_round`] makes it) in the order
/// Clipper returns it: starting right after its topmost (then rightmost) vertex.
pub fn clipper_output_order(mut outline: Vec<[i64; 2]>) -> Vec<[i64; 2]> {
    let top = (0..outline.len()).min_by(|a, b| {
        let (p, q) = (outline[*a], outline[*b]);
        p[1].cmp(&q[1]).then(q[0].cmp(&p[0]))
    });
    if let Some(top) = top {
        let n = outline.len();
        outline.rotate_left((top + 1) % n);
    }
    outline
}

/// Area of a simple polygon (absolute value of the shoelace sum).
pub fn polygon_area(poly: &[Point]) -> f64 {
    let n = poly.len();
    let mut s = 0.0;
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        s += a[0] * b[1] - b[0] * a[1];
    }
    s.abs() / 2.0
}

/// Perimeter of a closed polygon.
pub fn polygon_perimeter(poly: &[Point]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt()
        })
        .sum()
}

/// Rounds half away from zero, as Clipper does.
fn clipper_round(v: f64) -> i64 {
    if v < 0.0 {
        (v - 0.5) as i64
    } else {
        (v + 0.5) as i64
    }
}

/// Grows a closed polygon with integer vertices outwards by `delta` with round joins, the way
/// Clipper's `ClipperOffset` (as used through pyclipper, arc tolerance 0.25) builds the offset
/// outline, and returns the outline's vertices (rounded to integers).
///
/// Clipper then unions the outline with itself; for the convex quadrilaterals offset here that
/// only drops duplicate and collinear vertices, which no later step (a convex hull) sees.
pub fn offset_round(path: &[[i64; 2]], delta: f64) -> Vec<[i64; 2]> {
    // Consecutive duplicates (and a closing duplicate) removed.
    let mut src: Vec<[i64; 2]> = Vec::with_capacity(path.len());
    for p in path {
        if src.last() != Some(p) {
            src.push(*p);
        }
    }
    while src.len() > 1 && src.first() == src.last() {
        src.pop();
    }
    if src.len() < 3 || delta <= 0.0 {
        return if delta <= 0.0 { src } else { Vec::new() };
    }
    // Orientation fixed so that the normals face outwards (positive area in Clipper's terms).
    let mut twice_area = 0.0;
    for i in 0..src.len() {
        let (a, b) = (src[i], src[(i + 1) % src.len()]);
        twice_area += a[0] as f64 * b[1] as f64 - b[0] as f64 * a[1] as f64;
    }
    if twice_area < 0.0 {
        src.reverse();
    }
    const ARC_TOLERANCE: f64 = 0.25;
    let y = if ARC_TOLERANCE > delta * ARC_TOLERANCE {
        delta * ARC_TOLERANCE
    } else {
        ARC_TOLERANCE
    };
    let mut steps = std::f64::consts::PI / (1.0 - y / delta).acos();
    if steps > delta * std::f64::consts::PI {
        steps = delta * std::f64::consts::PI;
    }
    let two_pi = 2.0 * std::f64::consts::PI;
    let (sin, cos) = ((two_pi / steps).sin(), (two_pi / steps).cos());
    let steps_per_rad = steps / two_pi;

    let n = src.len();
    let normal = |a: [i64; 2], b: [i64; 2]| -> [f64; 2] {
        let (dx, dy) = ((b[0] - a[0]) as f64, (b[1] - a[1]) as f64);
        if dx == 0.0 && dy == 0.0 {
            return [0.0, 0.0];
        }
        let f = 1.0 / (dx * dx + dy * dy).sqrt();
        [dy * f, -dx * f]
    };
    let normals: Vec<[f64; 2]> = (0..n).map(|j| normal(src[j], src[(j + 1) % n])).collect();
    let mut out = Vec::new();
    let at = |p: [i64; 2], nx: f64, ny: f64| {
        [
            clipper_round(p[0] as f64 + nx * delta),
            clipper_round(p[1] as f64 + ny * delta),
        ]
    };
    let mut k = n - 1;
    for j in 0..n {
        let (nk, nj) = (normals[k], normals[j]);
        let p = src[j];
        let mut sin_a = nk[0] * nj[1] - nj[0] * nk[1];
        let cos_a = nk[0] * nj[0] + nk[1] * nj[1];
        if (sin_a * delta).abs() < 1.0 && cos_a > 0.0 {
            // Nearly straight on: one vertex, and (as in Clipper 6.4) the next vertex still
            // measures its angle from this one's incoming normal.
            out.push(at(p, nk[0], nk[1]));
            continue;
        }
        sin_a = sin_a.clamp(-1.0, 1.0);
        if sin_a * delta < 0.0 {
            // A concave corner: the two offset ends joined through the vertex.
            out.push(at(p, nk[0], nk[1]));
            out.push(p);
            out.push(at(p, nj[0], nj[1]));
        } else {
            // Round join: an arc from normal k to normal j.
            let a = sin_a.atan2(cos_a);
            let count = ((steps_per_rad * a.abs()).round() as i64).max(1);
            let (mut x, mut yv) = (nk[0], nk[1]);
            for _ in 0..count {
                out.push(at(p, x, yv));
                let x2 = x;
                x = x * cos - sin * yv;
                yv = x2 * sin + yv * cos;
            }
            out.push(at(p, nj[0], nj[1]));
        }
        k = j;
    }
    out
}

/// The pixels of a convex polygon, edges included, as `(y, x_from, x_to)` spans clipped to
/// `width` x `height`: each edge is rasterised as an 8-connected line (as OpenCV's `fillPoly`
/// draws them) and each row filled between its outermost edge pixels.
pub fn fill_convex(poly: &[[i32; 2]], width: usize, height: usize) -> Vec<(usize, usize, usize)> {
    if poly.is_empty() || width == 0 || height == 0 {
        return Vec::new();
    }
    let ymin = poly.iter().map(|p| p[1]).min().unwrap_or(0);
    let ymax = poly.iter().map(|p| p[1]).max().unwrap_or(0);
    let rows = (ymax - ymin + 1) as usize;
    let mut lo = vec![i32::MAX; rows];
    let mut hi = vec![i32::MIN; rows];
    let mut mark = |x: i32, y: i32| {
        let r = (y - ymin) as usize;
        lo[r] = lo[r].min(x);
        hi[r] = hi[r].max(x);
    };
    let n = poly.len();
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        // Bresenham.
        let (mut x0, mut y0) = (a[0], a[1]);
        let (dx, dy) = ((b[0] - x0).abs(), -(b[1] - y0).abs());
        let (sx, sy) = (
            if x0 < b[0] { 1 } else { -1 },
            if y0 < b[1] { 1 } else { -1 },
        );
        let mut err = dx + dy;
        loop {
            mark(x0, y0);
            if x0 == b[0] && y0 == b[1] {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }
    let mut spans = Vec::new();
    for r in 0..rows {
        let y = ymin + r as i32;
        if y < 0 || y >= height as i32 || lo[r] > hi[r] {
            continue;
        }
        let x0 = lo[r].max(0);
        let x1 = hi[r].min(width as i32 - 1);
        if x0 <= x1 {
            spans.push((y as usize, x0 as usize, x1 as usize));
        }
    }
    spans
}

/// The homography mapping each `src[i]` to `dst[i]` (OpenCV's `getPerspectiveTransform`: the
/// 8x8 system solved by Gaussian elimination with partial pivoting), row-major, `m[8] = 1`.
pub fn perspective_transform(src: &[[f32; 2]; 4], dst: &[[f32; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0.0f64; 8]; 8];
    let mut b = [0.0f64; 8];
    for i in 0..4 {
        let (sx, sy) = (src[i][0], src[i][1]);
        let (dx, dy) = (dst[i][0], dst[i][1]);
        a[i] = [
            sx as f64,
            sy as f64,
            1.0,
            0.0,
            0.0,
            0.0,
            -(sx * dx) as f64,
            -(sy * dx) as f64,
        ];
        a[i + 4] = [
            0.0,
            0.0,
            0.0,
            sx as f64,
            sy as f64,
            1.0,
            -(sx * dy) as f64,
            -(sy * dy) as f64,
        ];
        b[i] = dx as f64;
        b[i + 4] = dy as f64;
    }
    for col in 0..8 {
        let pivot = (col..8).fold(col, |best, r| {
            if a[r][col].abs() > a[best][col].abs() {
                r
            } else {
                best
            }
        });
        if a[pivot][col].abs() < f64::EPSILON {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let d = -1.0 / a[col][col];
        let pivot_row = a[col];
        for r in col + 1..8 {
            let alpha = a[r][col] * d;
            for (v, p) in a[r].iter_mut().zip(pivot_row).skip(col + 1) {
                *v += alpha * p;
            }
            b[r] += alpha * b[col];
        }
    }
    let mut x = [0.0f64; 8];
    for r in (0..8).rev() {
        let mut s = b[r];
        for c in r + 1..8 {
            s -= a[r][c] * x[c];
        }
        x[r] = s / a[r][r];
    }
    Some([x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], 1.0])
}

/// Inverse of a 3x3 matrix (adjugate over determinant), row-major.
pub fn invert3(m: &[f64; 9]) -> Option<[f64; 9]> {
    let det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
        + m[2] * (m[3] * m[7] - m[4] * m[6]);
    if det == 0.0 || !det.is_finite() {
        return None;
    }
    let d = 1.0 / det;
    Some([
        (m[4] * m[8] - m[5] * m[7]) * d,
        (m[2] * m[7] - m[1] * m[8]) * d,
        (m[1] * m[5] - m[2] * m[4]) * d,
        (m[5] * m[6] - m[3] * m[8]) * d,
        (m[0] * m[8] - m[2] * m[6]) * d,
        (m[2] * m[3] - m[0] * m[5]) * d,
        (m[3] * m[7] - m[4] * m[6]) * d,
        (m[1] * m[6] - m[0] * m[7]) * d,
        (m[0] * m[4] - m[1] * m[3]) * d,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn hull_drops_inner_and_collinear_points() {
        let pts = [
            [0.0, 0.0],
            [2.0, 0.0],
            [4.0, 0.0],
            [4.0, 3.0],
            [0.0, 3.0],
            [1.0, 1.0],
            [2.0, 2.0],
        ];
        let hull = convex_hull(&pts);
        assert_eq!(hull, vec![[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]]);
    }

    #[test]
    fn min_area_rect_of_rotated_rectangle() {
        // A 10 x 4 rectangle rotated by 30 degrees about (20, 10), with points inside it too.
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let place = |u: f64, v: f64| [20.0 + u * c - v * s, 10.0 + u * s + v * c];
        let mut pts = vec![
            place(-5.0, -2.0),
            place(5.0, -2.0),
            place(5.0, 2.0),
            place(-5.0, 2.0),
        ];
        pts.push(place(0.0, 0.0));
        pts.push(place(3.0, -1.0));
        pts.push(place(-4.9, 1.9));
        let rect = min_area_rect(&pts);
        assert!(close(rect.cx as f64, 20.0, 1e-4) && close(rect.cy as f64, 10.0, 1e-4));
        // OpenCV's convention: angle in [-90, 0); 30 degrees becomes -60 with the sides swapped.
        assert!(close(rect.angle as f64, -60.0, 1e-4), "{rect:?}");
        assert!(close(rect.width as f64, 4.0, 1e-4) && close(rect.height as f64, 10.0, 1e-4));
        let corners = box_points(&rect);
        for corner in [
            place(-5.0, -2.0),
            place(5.0, -2.0),
            place(5.0, 2.0),
            place(-5.0, 2.0),
        ] {
            assert!(
                corners
                    .iter()
                    .any(|p| close(p[0] as f64, corner[0], 1e-4)
                        && close(p[1] as f64, corner[1], 1e-4)),
                "{corner:?} not in {corners:?}"
            );
        }
    }

    #[test]
    fn min_area_rect_matches_opencv_bits() {
        // cv2.minAreaRect / cv2.boxPoints (opencv-python 5.0) of this contour of a DB map (as
        // findContours lists it, CHAIN_APPROX_SIMPLE):
        // ((673.4998779296875, 654.4999389648438), (14.999998092651367, 602.9998779296875), -90.0)
        let flat: [i32; 136] = [
            600, 647, 599, 648, 540, 648, 539, 649, 461, 649, 460, 648, 428, 648, 427, 649, 426,
            648, 424, 648, 423, 649, 394, 649, 393, 648, 392, 648, 391, 649, 375, 649, 373, 651,
            373, 655, 372, 656, 372, 657, 373, 658, 373, 659, 374, 660, 376, 660, 377, 661, 383,
            661, 384, 662, 528, 662, 529, 661, 596, 661, 597, 662, 603, 662, 604, 661, 636, 661,
            637, 660, 676, 660, 677, 659, 899, 659, 900, 660, 907, 660, 908, 659, 947, 659, 948,
            660, 969, 660, 970, 659, 972, 659, 975, 656, 975, 653, 974, 652, 974, 651, 970, 651,
            969, 650, 895, 650, 894, 649, 892, 649, 891, 650, 890, 649, 853, 649, 852, 648, 748,
            648, 747, 647, 646, 647, 645, 648, 644, 647, 604, 647, 603, 648, 602, 648, 601, 647,
        ];
        let contour: Vec<Point> = flat
            .chunks_exact(2)
            .map(|p| [p[0] as f64, p[1] as f64])
            .collect();
        let r = min_area_rect(&contour);
        let got = [r.cx, r.cy, r.width, r.height, r.angle].map(f64::from);
        let want: [f64; 5] = [
            673.4998779296875,
            654.4999389648438,
            14.999998092651367,
            602.9998779296875,
            -90.0,
        ];
        assert_eq!(got, want);
        // The float noise is what makes pyclipper later truncate 371.99994 to 371.
        let (b, _) = mini_box(&contour);
        let b: Vec<[f64; 2]> = b.iter().map(|p| p.map(f64::from)).collect();
        assert_eq!(b[0], [371.99993896484375, 646.9999389648438]);
        assert_eq!(b[2], [974.9998168945312, 661.9999389648438]);
    }

    #[test]
    fn hull_order_follows_the_input() {
        // Screen-clockwise input: starts at the first input point on the hull.
        let cw = [[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]];
        assert_eq!(
            ordered_hull(&cw),
            vec![[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]]
        );
        // Screen-counter-clockwise input (down first): clockwise hull from the last hull point.
        let ccw = [[0.0, 0.0], [0.0, 3.0], [4.0, 3.0], [4.0, 0.0]];
        assert_eq!(
            ordered_hull(&ccw),
            vec![[4.0, 0.0], [4.0, 3.0], [0.0, 3.0], [0.0, 0.0]]
        );
        // Clipper order: after the topmost, rightmost vertex.
        let out = clipper_output_order(vec![[10, 0], [40, 0], [43, 1], [45, 5], [5, 5]]);
        assert_eq!(out[0], [43, 1]);
        assert_eq!(out[out.len() - 1], [40, 0]);
    }

    #[test]
    fn mini_box_orders_corners() {
        let pts = [
            [10.0, 5.0],
            [40.0, 5.0],
            [40.0, 20.0],
            [10.0, 20.0],
            [25.0, 12.0],
        ];
        let (b, sside) = mini_box(&pts);
        assert_eq!(b, [[10.0, 5.0], [40.0, 5.0], [40.0, 20.0], [10.0, 20.0]]);
        assert_eq!(sside, 15.0);
        // A rectangle at 45 degrees: sorted by x, the left pair is (0, 10), (10, 0); the one with
        // the smaller y, (10, 0), comes first, then the right pair's upper point (30, 20).
        let pts = [[0.0, 10.0], [10.0, 0.0], [30.0, 20.0], [20.0, 30.0]];
        let (b, sside) = mini_box(&pts);
        let expected = [[10.0, 0.0], [30.0, 20.0], [20.0, 30.0], [0.0, 10.0]];
        for (got, want) in b.iter().zip(expected) {
            assert!(close(got[0] as f64, want[0], 1e-5) && close(got[1] as f64, want[1], 1e-5));
        }
        assert!(close(sside as f64, 200f64.sqrt(), 1e-5));
    }

    #[test]
    fn offset_matches_pyclipper() {
        // pyclipper.PyclipperOffset(); AddPath([[10,5],[40,5],[40,20],[10,20]], JT_ROUND,
        // ET_CLOSEDPOLYGON); Execute(5.0) gives these 12 vertices (in another order).
        let out = offset_round(&[[10, 5], [40, 5], [40, 20], [10, 20]], 5.0);
        let mut got = out.clone();
        got.sort();
        got.dedup();
        let mut expected = vec![
            [43, 1],
            [45, 5],
            [45, 20],
            [44, 23],
            [40, 25],
            [10, 25],
            [7, 24],
            [5, 20],
            [5, 5],
            [6, 2],
            [10, 0],
            [40, 0],
        ];
        expected.sort();
        assert_eq!(got, expected);
        // The opposite orientation offsets outwards too.
        let mut rev = offset_round(&[[10, 20], [40, 20], [40, 5], [10, 5]], 5.0);
        rev.sort();
        rev.dedup();
        assert_eq!(rev, expected);
    }

    #[test]
    fn fill_covers_edges_and_interior() {
        let spans = fill_convex(&[[1, 1], [4, 1], [4, 3], [1, 3]], 10, 10);
        assert_eq!(spans, vec![(1, 1, 4), (2, 1, 4), (3, 1, 4)]);
        let tri = fill_convex(&[[0, 0], [4, 4], [0, 4]], 3, 10);
        assert_eq!(
            tri,
            vec![(0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 0, 2), (4, 0, 2)]
        );
    }

    #[test]
    fn perspective_round_trip() {
        let src = [[12.0, 21.0], [387.0, 25.0], [380.0, 79.0], [10.0, 70.0]];
        let dst = [[0.0, 0.0], [375.0, 0.0], [375.0, 58.0], [0.0, 58.0]];
        let m = perspective_transform(&src, &dst).unwrap();
        let apply = |m: &[f64; 9], p: [f32; 2]| {
            let (x, y) = (p[0] as f64, p[1] as f64);
            let w = m[6] * x + m[7] * y + m[8];
            [
                (m[0] * x + m[1] * y + m[2]) / w,
                (m[3] * x + m[4] * y + m[5]) / w,
            ]
        };
        let inv = invert3(&m).unwrap();
        for i in 0..4 {
            let q = apply(&m, src[i]);
            assert!(close(q[0], dst[i][0] as f64, 1e-6) && close(q[1], dst[i][1] as f64, 1e-6));
            let back = apply(&inv, dst[i]);
            assert!(close(back[0], src[i][0] as f64, 1e-6), "{back:?}");
            assert!(close(back[1], src[i][1] as f64, 1e-6), "{back:?}");
        }
        // Pure translation + scale.
        let m = perspective_transform(
            &[[10.0, 20.0], [30.0, 20.0], [30.0, 30.0], [10.0, 30.0]],
            &[[0.0, 0.0], [20.0, 0.0], [20.0, 10.0], [0.0, 10.0]],
        )
        .unwrap();
        for (got, want) in m
            .iter()
            .zip([1.0, 0.0, -10.0, 0.0, 1.0, -20.0, 0.0, 0.0, 1.0])
        {
            assert!(close(*got, want, 1e-12), "{m:?}");
        }
    }

    #[test]
    fn polygon_measures() {
        let sq = [[0.0, 0.0], [4.0, 0.0], [4.0, 3.0], [0.0, 3.0]];
        assert_eq!(polygon_area(&sq), 12.0);
        assert_eq!(polygon_perimeter(&sq), 14.0);
    }
}
