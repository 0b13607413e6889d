<?php
// The PHP one of the suite's shops, PHP's built-in server as the router:
// json_encode, DATE_ATOM, DateTime with microseconds, microtime floats.
$variantB = getenv('VARIANT') === 'B';
$names = ['kettle', 'teapot', 'mug', 'spoon'];
$prices = [19.5, 20.0, 7.25, 3.0];
$created = new DateTimeImmutable('2025-03-14T09:26:53.589793+00:00');

function uuid4(): string {
    $b = random_bytes(16);
    $b[6] = chr(ord($b[6]) & 0x0f | 0x40);
    $b[8] = chr(ord($b[8]) & 0x3f | 0x80);
    return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
}

function item(int $i, bool $planted): array {
    global $names, $prices, $created;
    $tags = ['kitchen' => true, 'new' => true, "t$i" => true, 'sale' => $i % 2 === 0];
    return ['id' => $i, 'name' => $names[$i], 'price' => $prices[$i] + ($planted ? 1 : 0),
        'tags' => array_keys(array_filter($tags)),
        'createdAt' => $created->modify("+$i hours")->format(DATE_ATOM)];
}

function send(int $status, $body): void {
    http_response_code($status);
    header('Content-Type: application/json');
    echo json_encode($body);
}

function now(): string {
    return (new DateTime('now', new DateTimeZone('UTC')))->format('Y-m-d\TH:i:s.uP');
}

$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$method = $_SERVER['REQUEST_METHOD'];
if ($method === 'GET' && $path === '/api/items') {
    header('Cache-Control: ' . ($variantB ? 'no-store' : 'max-age=60'));
    send(200, ['generatedAt' => date(DATE_ATOM), 'requestId' => uuid4(),
        'items' => array_map(fn($i) => item($i, false), array_keys($names))]);
} elseif ($method === 'GET' && preg_match('#^/api/items/(\d+)$#', $path, $m)) {
    $i = (int)$m[1];
    if ($i >= count($names)) {
        send(404, ['error' => 'no such item']);
    } elseif ($variantB && $i === 3) {
        send(500, ['error' => 'internal']);
    } else {
        send(200, ['item' => item($i, $variantB), 'viewedAt' => now()]);
    }
} elseif ($method === 'GET' && $path === '/api/ranking') {
    $r = ['mug', 'kettle', 'spoon', 'teapot'];
    send(200, ['ranking' => $variantB ? array_reverse($r) : $r, 'at' => time()]);
} elseif ($method === 'GET' && $path === '/api/slow') {
    usleep($variantB ? 60000 : 20000);
    send(200, ['ok' => true, 'at' => now()]);
} elseif ($method === 'GET' && $path === '/api/status') {
    header('X-Request-Id: ' . uuid4());
    send(200, ['status' => 'ok', 'pid' => getmypid() > 0, 'uptime' => microtime(true) - $_SERVER['REQUEST_TIME_FLOAT'],
        'now' => microtime(true)]);
} elseif ($method === 'POST' && $path === '/api/orders') {
    $in = json_decode(file_get_contents('php://input'), true) ?: [];
    $i = $in['item'] ?? null;
    if (!is_int($i) || $i < 0 || $i >= count($names)) {
        send(400, ['error' => 'bad order']);
    } else {
        $n = random_int(1, PHP_INT_MAX >> 16);
        header("Location: /api/orders/$n");
        send(201, ['id' => uuid4(), 'number' => $n, 'createdAt' => now(), 'total' => ($in['qty'] ?? 1) * $prices[$i]]);
    }
} elseif ($method === 'GET' && $path === '/api/report.csv') {
    header('Content-Type: text/csv');
    echo "id,name,generated_at\n";
    foreach ($names as $i => $n) {
        echo "$i,$n," . now() . "\n";
    }
} elseif ($method === 'GET' && $path === '/api/health.txt') {
    header('Content-Type: text/plain');
    echo '# generated_at=' . date(DATE_ATOM) . "\nstatus ok\nitems " . count($names) . "\n";
} else {
    send(404, ['error' => 'not found']);
}
